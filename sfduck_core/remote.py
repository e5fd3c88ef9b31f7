"""The command line driving a running sfduck server over its HTTP API (`--server URL`).

A cron job on the server's host would otherwise open the DuckDB file the server owns and wait for
it; through the API its syncs share the server's executor and show up live on the dashboard.
Plain `urllib`, so the core needs no HTTP client library; errors become one-line `SfduckError`s
carrying the server's own message.
"""

from __future__ import annotations

import json
import os
import time
import urllib.error
import urllib.parse
import urllib.request
from typing import Any

from sfduck_core.errors import ServerUnreachableError, SfduckError
from sfduck_core.job_status import ACTIVE_JOB_STATUSES
from sfduck_core.progress import ProgressCallback, SyncProgress

TOKEN_ENV = "SFDUCK_API_TOKEN"
USER_ENV, PASSWORD_ENV = "SFDUCK_API_USER", "SFDUCK_API_PASSWORD"
API_PATH = "/api/v1"


class RemoteServer:
    def __init__(self, url: str, token: str | None = None, timeout_s: float = 60.0,
                 credentials: tuple[str, str] | None = None) -> None:
        if not url.startswith(("http://", "https://")):
            raise SfduckError(f"--server must be an http(s) URL, got {url!r}.")
        self.base = url.rstrip("/") + ("" if url.rstrip("/").endswith(API_PATH) else API_PATH)
        self.timeout_s = timeout_s
        self.token = token or os.environ.get(TOKEN_ENV) or self._login(credentials)

    def _login(self, credentials: tuple[str, str] | None) -> str:
        user, password = credentials or (os.environ.get(USER_ENV), os.environ.get(PASSWORD_ENV))
        if not user or not password:
            raise SfduckError(f"--server needs a token: set {TOKEN_ENV}, or {USER_ENV} and {PASSWORD_ENV}.")
        body = urllib.parse.urlencode({"username": user, "password": password}).encode()
        return str(self._request("POST", "/auth/token", body, "application/x-www-form-urlencoded",
                                 auth=False)["access_token"])

    def _request(self, method: str, path: str, body: bytes | None = None,
                 content_type: str = "application/json", auth: bool = True) -> Any:
        request = urllib.request.Request(self.base + path, data=body, method=method)
        if body is not None:
            request.add_header("Content-Type", content_type)
        if auth:
            request.add_header("Authorization", f"Bearer {self.token}")
        try:
            with urllib.request.urlopen(request, timeout=self.timeout_s) as response:
                return json.loads(response.read() or b"null")
        except urllib.error.HTTPError as exc:
            try:
                body = json.loads(exc.read())
            except ValueError:
                body = None
            body = body if isinstance(body, dict) else {}
            prefix = f"The server refused ({exc.code}): "
            if body.get("remedy") and body.get("message"):  # the facts: the command line words the fix
                raise SfduckError(prefix + str(body["message"]), remedy=str(body["remedy"]),
                                  **{str(k): str(v) for k, v in (body.get("facts") or {}).items()}) from None
            raise SfduckError(prefix + str(body.get("detail") or exc.reason)) from None
        except (urllib.error.URLError, TimeoutError, ConnectionError) as exc:
            reason = getattr(exc, "reason", exc)
            raise ServerUnreachableError(f"Cannot reach the sfduck server at {self.base}: {reason}") from None

    def call(self, method: str, path: str, payload: dict[str, Any] | None = None, **query: Any) -> Any:
        params = {k: v for k, v in query.items() if v is not None}
        quoted = path + (("?" + urllib.parse.urlencode(params)) if params else "")
        return self._request(method, quoted, json.dumps(payload).encode() if payload is not None else None)

    def sync(self, payload: dict[str, Any], on_progress: ProgressCallback, poll_s: float = 0.5) -> dict[str, Any]:
        """Start a sync on the server and wait for its end, reporting progress as it goes."""
        started = self.call("POST", "/sync/start", payload)
        sync_id = started["sync_id"]
        while True:
            job = self.call("GET", f"/sync/status/{quote(sync_id)}")
            if job.get("progress"):
                p = job["progress"]
                on_progress(SyncProgress(sync_id, job["schema_name"], job["table_name"], phase=p["phase"],
                                         message=p["message"], rows_done=p["rows_done"], rows_total=p["rows_total"],
                                         files_done=p["files_done"], files_total=p["files_total"],
                                         bytes_done=p["bytes_done"]))
            if job["status"] not in ACTIVE_JOB_STATUSES:
                return job
            time.sleep(poll_s)


def quote(segment: str) -> str:
    """One path segment, safely (a table name may hold '/', '?', spaces...)."""
    return urllib.parse.quote(segment, safe="")
