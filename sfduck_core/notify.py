"""Messages to people when a sync fails or a schedule pauses itself, through apprise URLs.

One setting (`SFDUCK_NOTIFY_URLS`) reaches Slack, e-mail, a generic JSON webhook and ~100 other
services, because apprise owns each service's protocol. Sending happens on a thread of its own: a
slow or failing receiver is logged and never delays or fails a sync.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Sequence
from typing import Any

import apprise

from sfduck_core.errors import ConfigError

_log = logging.getLogger("sfduck.notify")


class Notifier:
    def __init__(self, urls: Sequence[str], on_success: bool = False) -> None:
        self.on_success = on_success
        self._apprise = apprise.Apprise()
        for url in urls:
            if not self._apprise.add(url):
                # never echo the URL: it often holds a webhook token
                scheme = url.split("://", 1)[0] if "://" in url else "?"
                raise ConfigError(f"SFDUCK_NOTIFY_URLS holds a URL apprise cannot use (scheme {scheme!r}); "
                                  "see https://github.com/caronc/apprise/wiki for the URL formats.")
        self._pending: list[threading.Thread] = []

    @property
    def enabled(self) -> bool:
        return len(self._apprise) > 0

    def job_ended(self, job: dict[str, Any]) -> None:
        """A failed job always, a completed one when asked for; a cancel was someone's choice."""
        status = job.get("status")
        table = f"{job.get('schema_name')}.{job.get('table_name')}"
        who = job.get("trigger") or "cli"
        if status == "failed":
            self.send(f"sfduck: sync of {table} failed",
                      f"Sync {job.get('sync_id')} ({job.get('strategy')}, started by {who}) failed: "
                      f"{job.get('error_message')}", apprise.NotifyType.FAILURE)
        elif status == "completed" and self.on_success:
            rows = (job.get("stats") or {}).get("rows_processed")
            self.send(f"sfduck: synced {table}", f"Sync {job.get('sync_id')} completed ({rows} rows).",
                      apprise.NotifyType.SUCCESS)

    def schedule_paused(self, table: str, reason: str) -> None:
        self.send(f"sfduck: schedule of {table} paused", reason, apprise.NotifyType.WARNING)

    def send(self, title: str, body: str, kind: str = apprise.NotifyType.INFO) -> None:
        if not self.enabled:
            return

        def deliver() -> None:
            try:
                if not self._apprise.notify(title=title, body=body, notify_type=kind):
                    _log.warning("a notification could not be delivered: %s", title)
            except Exception:
                _log.exception("a notification failed: %s", title)

        thread = threading.Thread(target=deliver, name="sfduck-notify", daemon=True)
        self._pending = [t for t in self._pending if t.is_alive()] + [thread]
        thread.start()

    def flush(self, timeout_s: float = 10.0) -> None:
        """Wait (bounded) for notifications on their way, e.g. before the process exits."""
        for thread in list(self._pending):
            thread.join(timeout_s)
