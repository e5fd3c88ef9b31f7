"""fakesnow's Starlette app with login, the stage commands and table statistics in front of it."""

from __future__ import annotations

import contextlib
import datetime as dt
import fnmatch
import gzip
import hashlib
import json
import logging
import os
import secrets
import threading
import uuid
from collections.abc import Awaitable, Callable
from typing import Any
from urllib.parse import unquote, urlparse

import fakesnow.server as fs_server
import snowflake.connector.errors
from fakesnow.converter import from_binding
from fakesnow.fakes import FakeSnowflakeConnection
from starlette.applications import Starlette
from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from sfduck_emulator.errors import syntax_error, unsupported
from sfduck_emulator.responses import error_response, rows_response, status_response
from sfduck_emulator.scanner import Token, matching_paren, parse_options, tokenize
from sfduck_emulator.stages import (
    drop_stage_storage,
    normalise_ident,
    resolve_stage,
    split_outside_quotes,
    stage_ref,
)
from sfduck_emulator.table_stats import record_table_change
from sfduck_emulator.unload import unload

logger = logging.getLogger(__name__)


Handler = Callable[[Request], Awaitable[Response]]


def _bindings(body: dict[str, Any]) -> Any:
    """Positional or named bindings the way fakesnow's server reads them (no array binding)."""
    bindings = body.get("bindings")
    if not bindings:
        return None
    if not all(k.isdigit() for k in bindings):
        return {name: from_binding(b) for name, b in bindings.items()}
    if any(isinstance(b["value"], list) for b in bindings.values()):
        raise unsupported("array binding in a stage command")
    return tuple(from_binding(bindings[str(pos)]) for pos in range(1, len(bindings) + 1))


async def _json_body(request: Request) -> dict[str, Any]:
    body = await request.body()  # Starlette caches it: fakesnow's handler can read it again
    if request.headers.get("Content-Encoding") == "gzip":
        body = gzip.decompress(body)
    return json.loads(body)

_PASSTHROUGH_SESSION_PARAMS = {"AUTOCOMMIT", "QUOTED_IDENTIFIERS_IGNORE_CASE"}


class EmulatorApp:
    """fakesnow's Starlette app with authentication and the stage commands in front of it."""

    def __init__(self, user: str, password: str) -> None:
        self.user = user
        self.password = password
        self.temp_stages: dict[str, set[str]] = {}
        self.prevent_internal_unload = False
        self.deny_create_stage = False  # a role without CREATE STAGE on the schema, for tests
        self.unload_http_status: int | None = None  # an outage on COPY INTO, for tests
        # a slow unload, for tests: COPY INTO waits until released (UNSET) or the delay passes
        self.unload_delay_s = 0.0
        self.unload_released = threading.Event()
        self._lock = threading.Lock()
        routes = [
            Route("/session/v1/login-request", self.login, methods=["POST"]),
            Route("/session", self.session, methods=["POST"]),
            Route("/queries/v1/query-request", self.query, methods=["POST"]),
            Route("/telemetry/send", self.telemetry, methods=["POST"]),
            *fs_server.routes,
        ]
        self.app = Starlette(routes=routes)

    # -- authentication --------------------------------------------------------------------

    async def login(self, request: Request) -> Response:
        data = (await _json_body(request)).get("data") or {}
        login_name = str(data.get("LOGIN_NAME") or "")
        password = str(data.get("PASSWORD") or "")
        user_ok = secrets.compare_digest(login_name.upper().encode(), self.user.upper().encode())
        password_ok = secrets.compare_digest(password.encode(), self.password.encode())
        if not (user_ok and password_ok):
            return JSONResponse(
                {
                    "data": {
                        "nextAction": "RETRY_LOGIN",
                        "authnMethod": "USERNAME_PASSWORD",
                        "loginName": login_name,
                    },
                    "code": "390100",
                    "message": "Incorrect username or password was specified.",
                    "success": False,
                    "headers": None,
                }
            )
        response = await fs_server.login_request(request)
        payload = json.loads(bytes(response.body))
        if payload.get("success") and isinstance(payload.get("data"), dict):
            # Without a master token the connector never logs out (close() fails quietly with
            # "Connection is closed"), so sessions and their temporary stages would live forever.
            payload["data"]["masterToken"] = secrets.token_urlsafe(32)
        return JSONResponse(payload, status_code=response.status_code)

    async def session(self, request: Request) -> Response:
        token = None
        with contextlib.suppress(fs_server.ServerError):
            token = fs_server.to_token(request)
        conn = fs_server.sessions.get(token) if token else None
        response = await fs_server.session(request)
        if token and conn is not None and bool(request.query_params.get("delete")):
            await run_in_threadpool(self._close_session, token, conn)
        return response

    def _close_session(self, token: str, conn: FakeSnowflakeConnection) -> None:
        """Snowflake drops temporary stages (and tables) when their session ends."""
        with self._lock:
            stages = self.temp_stages.pop(token, set())
        duck = fs_server.shared_fs.duck_conn.cursor()
        try:
            for fqname in stages:
                drop_stage_storage(duck, fqname)
        finally:
            duck.close()
        with contextlib.suppress(Exception):
            conn.close()

    async def telemetry(self, request: Request) -> Response:
        return JSONResponse({"success": True, "data": None, "code": None, "message": None})

    # -- queries -----------------------------------------------------------------------------

    async def query(self, request: Request) -> Response:
        try:
            token = fs_server.to_token(request)
            conn = fs_server.to_conn(token)
        except fs_server.ServerError:
            return await fs_server.query_request(request)  # fakesnow answers with its 401
        body = await _json_body(request)
        sql = body.get("sqlText") or ""
        try:
            toks = tokenize(sql)
        except Exception:  # let fakesnow report whatever it makes of it
            return await fs_server.query_request(request)
        if body.get("describeOnly") or not toks:
            return await fs_server.query_request(request)
        try:
            handled = await run_in_threadpool(self._dispatch, conn, toks, sql, body)
        except snowflake.connector.errors.Error as e:
            logger.info("emulator refused %r: %s", sql[:200], e)
            return error_response(e)
        if handled is not None:
            return handled
        response = await fs_server.query_request(request)
        if response.status_code == 500:
            # fakesnow's "unhandled exception" (a type or function it lacks, a value beyond its
            # types): Snowflake would answer with an error, and a 500 makes the connector retry
            # for minutes
            return error_response(unsupported(f"This statement ({sql[:80]!r}...)"))
        self._remember_temp_stage(token, conn, toks, response)
        if b'"success":true' in bytes(response.body).replace(b" ", b""):
            await run_in_threadpool(record_table_change, sql, conn)
        return response

    def _dispatch(
        self, conn: FakeSnowflakeConnection, toks: list[Token], sql: str, body: dict[str, Any]
    ) -> Response | None:
        words = [t.upper for t in toks[:3]]
        if words[:2] == ["COPY", "INTO"] and len(toks) > 2 and toks[2].text.startswith("@"):
            return self._copy_into_stage(conn, toks, sql, body)
        if words[0] == "GET":
            return self._get(conn, toks)
        if words[0] in ("REMOVE", "RM"):
            return self._remove(conn, toks)
        if words[0] in ("LIST", "LS") and len(toks) > 1 and not toks[1].text.startswith("@%"):
            # fakesnow's LIST mis-resolves quoted names (@"DB"."SCHEMA"."S") and has no @~
            return self._list(conn, toks)
        if words[:2] == ["DROP", "STAGE"]:
            return self._drop_stage(conn, toks)
        if self.deny_create_stage and _creates_stage(toks):
            raise snowflake.connector.errors.ProgrammingError(
                msg=f"SQL access control error:\nInsufficient privileges to operate on schema '{conn.schema}'",
                errno=3001,
                sqlstate="42501",
            )
        if words[:2] == ["SHOW", "PARAMETERS"] and [t.upper for t in toks[-2:]] == ["IN", "ACCOUNT"]:
            return self._show_account_parameters(conn, toks)
        if words[:3] == ["ALTER", "ACCOUNT", "SET"] or words[:3] == ["ALTER", "ACCOUNT", "UNSET"]:
            return self._alter_account(conn, toks)
        if words[:2] == ["ALTER", "SESSION"] and len(toks) > 2 and words[2] in ("SET", "UNSET"):
            names = {t.upper for t in toks[3:] if t.kind == "word"}
            if not names & _PASSTHROUGH_SESSION_PARAMS:
                return status_response(conn, "Statement executed successfully.")
        return None

    def _alter_account(self, conn: FakeSnowflakeConnection, toks: list[Token]) -> Response:
        """Only PREVENT_UNLOAD_TO_INTERNAL_STAGES, so tests can see sfduck fall back to arrow
        exactly as it must on accounts that forbid internal-stage unloads."""
        words = [t.upper for t in toks if t.kind == "word"]
        if "SFDUCK_DENY_CREATE_STAGE" in words:  # the emulator's own: the role lacks CREATE STAGE
            self.deny_create_stage = words[2] == "SET" and "TRUE" in words
            return status_response(conn, "Statement executed successfully.")
        numbers = [t.text for t in toks if t.text.isdigit()]
        if "SFDUCK_UNLOAD_HTTP_STATUS" in words:  # the emulator's own: unloads answer with this status
            self.unload_http_status = int(numbers[0]) if words[2] == "SET" and numbers else None
            return status_response(conn, "Statement executed successfully.")
        if "SFDUCK_UNLOAD_DELAY_S" in words:  # the emulator's own: unloads wait (UNSET releases them)
            self.unload_delay_s = float(numbers[0]) if words[2] == "SET" and numbers else 0.0
            (self.unload_released.clear if self.unload_delay_s else self.unload_released.set)()
            return status_response(conn, "Statement executed successfully.")
        if "PREVENT_UNLOAD_TO_INTERNAL_STAGES" not in words:
            raise unsupported("ALTER ACCOUNT other than PREVENT_UNLOAD_TO_INTERNAL_STAGES")
        self.prevent_internal_unload = words[2] == "SET" and "TRUE" in words
        return status_response(conn, "Statement executed successfully.")

    def _show_account_parameters(self, conn: FakeSnowflakeConnection, toks: list[Token]) -> Response:
        """The one account parameter the emulator has, as Snowflake lists it (fakesnow has none)."""
        like = toks[3].text.strip("'").upper() if len(toks) > 3 and toks[2].upper == "LIKE" else "%"
        name = "PREVENT_UNLOAD_TO_INTERNAL_STAGES"
        rows = []
        if fnmatch.fnmatchcase(name, like.replace("%", "*").replace("_", "?")):
            value = "true" if self.prevent_internal_unload else "false"
            rows.append([name, value, "false", "ACCOUNT" if self.prevent_internal_unload else "",
                         "Prevent unloading data to internal stages", "BOOLEAN"])
        columns = [("key", "text"), ("value", "text"), ("default", "text"), ("level", "text"),
                   ("description", "text"), ("type", "text")]
        return rows_response(conn, columns, rows)

    def _copy_into_stage(
        self, conn: FakeSnowflakeConnection, toks: list[Token], sql: str, body: dict[str, Any]
    ) -> Response:
        if self.unload_http_status:
            return Response(status_code=self.unload_http_status, content=b"Service Unavailable")
        if self.unload_delay_s:
            self.unload_released.wait(self.unload_delay_s)
        if self.prevent_internal_unload:
            raise snowflake.connector.errors.ProgrammingError(
                msg="Unload to internal stage is not allowed by the account parameter "
                "PREVENT_UNLOAD_TO_INTERNAL_STAGES.",
                errno=3575,
                sqlstate="0A000",
            )
        name, path = stage_ref(toks[2])
        if len(toks) < 5 or toks[3].upper != "FROM":
            raise syntax_error("expected FROM after the stage in COPY INTO <location>")
        if toks[4].text == "(":
            close = matching_paren(toks, 4)
            query = sql[toks[4].end : toks[close].start]
            rest = close + 1
        elif toks[4].kind == "word":
            query = f"SELECT * FROM {toks[4].text}"
            rest = 5
        else:
            raise syntax_error(f"unexpected '{toks[4].text}' after FROM")
        opts = parse_options(toks, rest)
        stage = resolve_stage(conn, name, self.user)
        rows, input_bytes, output_bytes = unload(conn, stage, path, query, opts, _bindings(body))
        return rows_response(
            conn,
            [("rows_unloaded", "fixed"), ("input_bytes", "fixed"), ("output_bytes", "fixed")],
            [[rows, input_bytes, output_bytes]],
        )

    def _get(self, conn: FakeSnowflakeConnection, toks: list[Token]) -> Response:
        if len(toks) < 3:
            raise syntax_error("GET needs a stage and a local 'file://' URL")
        name, path = stage_ref(toks[1])
        local = toks[2].text
        if not local.lower().startswith("file://"):
            raise syntax_error(f"GET target {local} must be a file:// URL")
        opts = parse_options(toks, 3)
        stage = resolve_stage(conn, name, self.user)
        local_path = unquote(urlparse(local).path) or local[len("file://") :]
        try:
            parallel = int(opts.get("PARALLEL", 10))
        except ValueError:
            raise syntax_error(f"invalid PARALLEL {opts.get('PARALLEL')}") from None
        files = stage.files(path, opts.get("PATTERN"))
        return JSONResponse(
            {
                "data": {
                    # Snowflake hands out one stage location plus paths relative to it; with
                    # LOCAL_FS the connector copies them itself and builds the result rows.
                    "command": "DOWNLOAD",
                    "src_locations": files,
                    "localLocation": local_path,
                    "parallel": max(1, min(parallel, 99)),
                    "encryptionMaterial": None,
                    "stageInfo": {"locationType": "LOCAL_FS", "location": stage.directory, "creds": {}},
                    "queryId": str(uuid.uuid4()),
                    "finalDatabaseName": conn.database,
                    "finalSchemaName": conn.schema,
                },
                "success": True,
            }
        )

    def _remove(self, conn: FakeSnowflakeConnection, toks: list[Token]) -> Response:
        if len(toks) < 2:
            raise syntax_error("REMOVE needs a stage")
        name, path = stage_ref(toks[1])
        opts = parse_options(toks, 2)
        stage = resolve_stage(conn, name, self.user)
        rows = []
        for rel in stage.files(path, opts.get("PATTERN")):
            os.remove(os.path.join(stage.directory, rel))
            rows.append([stage.list_prefix + rel, "removed"])
        return rows_response(conn, [("name", "text"), ("result", "text")], rows)

    def _list(self, conn: FakeSnowflakeConnection, toks: list[Token]) -> Response:
        name, path = stage_ref(toks[1])
        opts = parse_options(toks, 2)
        stage = resolve_stage(conn, name, self.user)
        rows = []
        for rel in stage.files(path, opts.get("PATTERN")):
            full = os.path.join(stage.directory, rel)
            stat = os.stat(full)
            modified = dt.datetime.fromtimestamp(stat.st_mtime, dt.UTC).strftime("%a, %d %b %Y %H:%M:%S GMT")
            rows.append([stage.list_prefix + rel, stat.st_size, _md5(full), modified])
        return rows_response(
            conn, [("name", "text"), ("size", "fixed"), ("md5", "text"), ("last_modified", "text")], rows
        )

    def _drop_stage(self, conn: FakeSnowflakeConnection, toks: list[Token]) -> Response:
        i = 2
        if_exists = [t.upper for t in toks[2:4]] == ["IF", "EXISTS"]
        if if_exists:
            i = 4
        if len(toks) != i + 1:
            raise syntax_error("expected DROP STAGE [IF EXISTS] <name>")
        try:
            stage = resolve_stage(conn, toks[i].text, self.user)
        except snowflake.connector.errors.ProgrammingError as e:
            if if_exists and e.errno == 2003:
                name = normalise_ident(split_outside_quotes(toks[i].text, ".")[-1])
                return status_response(
                    conn, f"Drop statement executed successfully ({name} already dropped)."
                )
            raise
        drop_stage_storage(conn._duck_conn, stage.fqname)
        with self._lock:
            for stages in self.temp_stages.values():
                stages.discard(stage.fqname)
        return status_response(conn, f"{stage.fqname.rsplit('.', 1)[-1]} successfully dropped.")

    def _remember_temp_stage(
        self, token: str, conn: FakeSnowflakeConnection, toks: list[Token], response: Response
    ) -> None:
        words = [t.upper for t in toks]
        if not words or words[0] != "CREATE" or "STAGE" not in words[:6]:
            return
        if not any(w in ("TEMP", "TEMPORARY") for w in words[: words.index("STAGE")]):
            return
        if not json.loads(bytes(response.body)).get("success"):
            return
        name_tok = toks[words.index("STAGE") + 1 :]
        if [t.upper for t in name_tok[:3]] == ["IF", "NOT", "EXISTS"]:
            name_tok = name_tok[3:]
        if not name_tok:
            return
        parts = [normalise_ident(p) for p in split_outside_quotes(name_tok[0].text, ".")]
        catalog = parts[-3] if len(parts) == 3 else conn.database
        schema = parts[-2] if len(parts) >= 2 else conn.schema
        with self._lock:
            self.temp_stages.setdefault(token, set()).add(f"{catalog}.{schema}.{parts[-1]}")


def _creates_stage(toks: list[Token]) -> bool:
    """CREATE [OR REPLACE] [TEMP|TEMPORARY] STAGE ..."""
    words = [t.upper for t in toks[:5]]
    if not words or words[0] != "CREATE":
        return False
    for word in words[1:]:
        if word == "STAGE":
            return True
        if word not in ("OR", "REPLACE", "TEMP", "TEMPORARY"):
            return False
    return False


def _md5(path: str) -> str:
    digest = hashlib.md5(usedforsecurity=False)
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()
