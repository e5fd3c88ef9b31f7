"""Everything one sfduck server process shares: the engine, the sync executor, logins, schedules.

The dashboard, the HTTP API and the scheduler run in one process and must see one executor (so a
sync started by any of them is visible to all, and `SFDUCK_MAX_PARALLEL_SYNCS` bounds them
together), one user directory and one login throttle. `shared_service()` hands every caller in
the process the same `Service` for the same configuration; the server's lifespan starts its
scheduler and shuts it down.
"""

from __future__ import annotations

import datetime as dt
import logging
import os
import threading
from dataclasses import dataclass, field
from typing import Any

from sfduck_core.authdb import AUTH_DB_FILE, AuthDatabase
from sfduck_core.background import BackgroundSyncs
from sfduck_core.config import Settings, load_settings
from sfduck_core.engine import SyncEngine, SyncRequest
from sfduck_core.errors import SfduckError
from sfduck_core.job_status import ACTIVE_JOB_STATUSES
from sfduck_core.notify import Notifier
from sfduck_core.plugins import snowflake_source
from sfduck_core.retention import apply_retention, policy_from
from sfduck_core.schedules import SCHEDULER_USER, Chore, Schedule, Scheduler, ScheduleStore
from sfduck_core.sessions import Session, SessionTokens, resolve_session_key
from sfduck_core.store import Store
from sfduck_core.users import ADMIN, LoginThrottle, UserDirectory, load_users

_log = logging.getLogger("sfduck")
KEEP_WARM_S = 1.0  # the server keeps the DuckDB file open this long after each use


class LoginRefusedError(SfduckError):
    """Wrong credentials, or too many failures: `retry_after_s` says how long to wait (0: none)."""

    def __init__(self, message: str, retry_after_s: float = 0.0) -> None:
        super().__init__(message)
        self.retry_after_s = retry_after_s


@dataclass(frozen=True)
class Principal:
    """A logged-in user, as every front end sees them."""

    username: str
    roles: tuple[str, ...]
    session: Session

    @property
    def is_admin(self) -> bool:
        return ADMIN in self.roles


@dataclass
class Service:
    settings: Settings
    engine: SyncEngine
    syncs: BackgroundSyncs
    throttle: LoginThrottle
    tokens: SessionTokens
    notifier: Notifier
    schedules: ScheduleStore
    scheduler: Scheduler
    # set by the server once it knows where it listens: why every login is refused (see exposure.py)
    login_refusal: str | None = None
    _users: tuple[tuple[str, float], UserDirectory] | None = field(default=None, repr=False)
    _users_lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    @property
    def source_label(self) -> str:
        """What front ends show as the data source: the account, or "demo"."""
        return "demo" if self.settings.demo else (self.settings.snowflake.account or "unknown")

    # --- users and logins ----------------------------------------------------------------------

    def users(self) -> UserDirectory:
        """The users file, re-read when it changes (a role removed takes effect at the next request)."""
        path = self.settings.users_file
        key = (str(path), path.stat().st_mtime if path.is_file() else 0.0)
        with self._users_lock:
            if self._users is None or self._users[0] != key:
                self._users = (key, load_users(self.settings.demo, path))
            return self._users[1]

    def login(self, username: str, password: str, address: str | None) -> tuple[str, Session]:
        """A signed token for these credentials, with the dashboard's throttle and messages."""
        if self.login_refusal:
            raise LoginRefusedError(self.login_refusal)
        username = username.strip().lower()
        if not username or not password:
            raise LoginRefusedError("Enter both a username and a password.")
        refusal = self.throttle.refusal_message(username, address)
        if refusal:
            raise LoginRefusedError(refusal, self.throttle.seconds_to_wait(username, address))
        users = self.users()
        if not users.verify(username, password):
            self.throttle.record_failure(username, address)
            wait = self.throttle.seconds_to_wait(username, address)
            raise LoginRefusedError(self.throttle.refusal_message(username, address)
                                    or "Wrong username or password. Check both and try again.", wait)
        self.throttle.record_success(username, address)
        return self.tokens.issue(username, users.password_hash_of(username) or "")

    def principal(self, session: Session | None) -> Principal | None:
        """Who `session` belongs to, if it is still valid and the user still has a role."""
        if session is None:
            return None
        users = self.users()
        if not self.tokens.is_valid(session, users.password_hash_of):
            return None
        roles = tuple(users.roles_of(session.username))
        return Principal(session.username, roles, session) if roles else None

    def authenticate(self, token: str | None) -> Principal | None:
        """The principal a bearer token or cookie proves, or None (forged, expired, revoked...)."""
        return self.principal(self.tokens.verify(token, self.users().password_hash_of))

    # --- syncs ---------------------------------------------------------------------------------

    def start_all(self, strategy: str, trigger: str, started_by: str | None) -> list[dict[str, Any]]:
        """Start a sync of every registered table; each entry says started (with its id) or why not."""
        outcomes: list[dict[str, Any]] = []
        for reg in self.engine.store.list_registrations():
            entry: dict[str, Any] = {"schema_name": reg.schema_name, "table_name": reg.table_name}
            try:
                bg = self.syncs.start(SyncRequest(reg.schema_name, reg.table_name, strategy=strategy,
                                                 trigger=trigger, started_by=started_by))
                entry.update(sync_id=bg.sync_id, started=True)
            except SfduckError as exc:
                entry.update(started=False, reason=str(exc))
            outcomes.append(entry)
        return outcomes

    def registered_tables(self) -> list[dict[str, Any]]:
        """Every registered table with its `table_id`, keys, schedule and latest sync."""
        schedules = {sched.table_id: sched for sched in self.schedules.list()}
        tables = []
        for reg in self.engine.store.list_registrations():
            status = self.engine.store.sync_status(reg.schema_name, reg.table_name)
            sched = schedules.get(reg.table_id)
            tables.append({
                **reg.as_dict(),
                "schedule": sched.when if sched else None,
                "schedule_enabled": sched.enabled if sched else None,
                "last_sync": None if not status or not status.get("last_sync_id") else {
                    "sync_id": status["last_sync_id"], "status": status["last_status"],
                    "at": status["last_sync_at"], "last_success_sync_id": status["last_success_sync_id"],
                    "last_success_at": status["last_success_at"], "row_count": status["row_count"]},
            })
        return tables

    def job(self, sync_id: str) -> dict[str, Any] | None:
        """A job with its live progress. One this process runs is answered from memory while it
        runs, so many clients polling a sync cost it nothing; others come from the store (after
        reaping, in case the process running them died)."""
        bg = self.syncs.get(sync_id)
        if bg is not None and bg.running and bg.job is not None:
            return {**bg.job, "progress": self.live_progress(sync_id)}
        job = self.engine.store.get_job(sync_id)
        if job is not None and job["status"] in ACTIVE_JOB_STATUSES and bg is None:
            self.engine.store.reap_dead_jobs()
            job = self.engine.store.get_job(sync_id)
        return None if job is None else {**job, "progress": self.live_progress(sync_id)}

    def live_progress(self, sync_id: str) -> dict[str, Any] | None:
        """Progress of a sync this process runs (None for others, or once forgotten)."""
        bg = self.syncs.get(sync_id)
        if bg is None or not bg.running:
            return None
        p = bg.progress
        return {"phase": p.phase, "message": p.message, "rows_done": p.rows_done, "rows_total": p.rows_total,
                "files_done": p.files_done, "files_total": p.files_total, "bytes_done": p.bytes_done,
                "fraction": p.fraction}

    def apply_retention(self, actor: str | None, *, keep_versions: int | None = None,
                        keep_days: float | None = None, dry_run: bool = False) -> dict[str, Any]:
        """The lake's retention now (an admin's request, or the scheduler's chore)."""
        return apply_retention(self.engine.store, policy_from(self.settings, keep_versions, keep_days),
                               actor=actor, dry_run=dry_run)

    def _job_ended(self, job: dict[str, Any]) -> None:
        self.notifier.job_ended(job)
        self.scheduler.job_ended(job)

    def _schedule_paused(self, schedule: Schedule, reason: str) -> None:
        self.notifier.schedule_paused(schedule.label, reason)

    # --- lifetime --------------------------------------------------------------------------------

    def start_background(self) -> None:
        """What runs as long as the server does: the scheduler (started by the server's lifespan),
        after cleaning up what a server that died mid-sync left (see SyncEngine.recover)."""
        try:
            self.engine.recover()
        except SfduckError as exc:  # a busy file: the next sync and the next status poll recover
            _log.warning("could not clean up after syncs of a stopped process yet: %s", exc)
        self.scheduler.start()
        if self.settings.job_retention_days:
            cutoff = dt.datetime.now(dt.UTC) - dt.timedelta(days=self.settings.job_retention_days)
            pruned = self.engine.store.prune_jobs(cutoff)
            _log.info("pruned %d jobs older than %g days", pruned, self.settings.job_retention_days)

    def shutdown(self, timeout_s: float = 20.0) -> list[str]:
        """Stop scheduling, cancel running syncs (they end `cancelled`, tables unchanged), wait a
        bounded time. Returns the ids of syncs that had not ended by then."""
        self.scheduler.stop()
        left = self.syncs.shutdown(timeout_s)
        self.notifier.flush(2.0)
        self.engine.store.storage.release()
        return left


def build_service(settings: Settings, cookie_key: str | None = None) -> Service:
    """Wire one process's objects from its settings (the emulator comes in through `plugins`)."""
    notifier = Notifier(settings.notify_urls, settings.notify_on_success)
    store = Store(settings.duckdb_path, settings.lock_timeout_s, settings.duckdb_memory_limit,
                  keep_warm_s=KEEP_WARM_S, target=settings.storage, metadata_url=settings.metadata_url)
    engine = SyncEngine(settings, snowflake_source(settings), store=store)
    engine.store.claim_source(settings.source_label)  # demo mode never starts on an account's data
    state_dir = settings.duckdb_path.parent
    auth_db = AuthDatabase(state_dir / AUTH_DB_FILE)
    tokens = SessionTokens(resolve_session_key(cookie_key, state_dir), auth_db, settings.session_hours * 3600)
    syncs = BackgroundSyncs(engine, max_parallel=settings.max_parallel_syncs)
    schedules = ScheduleStore(engine.store)
    scheduler = Scheduler(schedules, syncs.start, failure_limit=settings.schedule_failure_limit)
    service = Service(settings, engine, syncs, LoginThrottle(auth_db), tokens, notifier, schedules, scheduler)
    if store.storage.capabilities.retention and settings.lake_retention_cron:
        scheduler.chores.append(Chore("lake retention", settings.lake_retention_cron,
                            lambda: service.apply_retention(SCHEDULER_USER)))
    engine.on_job_end = service._job_ended
    scheduler.on_pause = service._schedule_paused
    return service


_services: dict[tuple[Any, ...], Service] = {}
_services_lock = threading.Lock()


def shared_service(cookie_key: str | None = None) -> Service:
    """This process's service for the current configuration (made once, logged once).

    Keyed by what settings are read from, so a test that changes SFDUCK_* variables or the working
    directory gets a service of its own while the dashboard and the API of one server share theirs.
    """
    key = (cookie_key, os.getcwd(),
           tuple(sorted((k, v) for k, v in os.environ.items() if k.startswith(("SFDUCK_", "SNOWFLAKE_")))))
    with _services_lock:
        service = _services.get(key)
        if service is None:
            settings = load_settings()
            _log.info(settings.describe())
            service = _services[key] = build_service(settings, cookie_key)
        return service
