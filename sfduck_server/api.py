"""The HTTP API (the original spec's endpoints, and schedules), mounted at /api/v1 beside the dashboard.

Every endpoint is a thin call into the process's `Service`, the same one the dashboard uses, so a
sync started here shows up live on the Sync page. Errors are always JSON `{"detail": "..."}` with
a status that says whose fault it is; sfduck's own errors carry messages written for users, and
anything else is logged and answered with a plain 500 that leaks no traceback.
"""


import datetime as dt
import logging
import threading
import time
from collections.abc import Callable
from typing import Annotated, Any, Literal

from fastapi import Body, Depends, FastAPI, Query, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, Response
from fastapi.security import OAuth2PasswordBearer, OAuth2PasswordRequestForm
from fastapi_offline import FastAPIOffline
from starlette.exceptions import HTTPException
from starlette.types import ASGIApp, Receive, Scope, Send

from sfduck_core.engine import TRIGGERS, SyncRequest
from sfduck_core.errors import (
    ConfigError,
    InvalidIdentifierError,
    JobNotFoundError,
    MissingIncrementalKeyError,
    NameCollisionError,
    NotRegisteredError,
    SfduckError,
    SourceError,
    StoreBusyError,
    SyncAlreadyRunningError,
    TableNotFoundError,
    UnsafeFilterError,
    worded,
)
from sfduck_core.job_status import ACTIVE_JOB_STATUSES
from sfduck_core.service import LoginRefusedError, Principal, Service
from sfduck_core.store import JobQuery
from sfduck_server import schemas as s

API_PREFIX = "/api/v1"
HEALTH_CACHE_S = 15.0
_log = logging.getLogger("sfduck.api")

# How the API words the fix of an error (its facts come from the core; the CLI and the dashboard
# word the same fixes in their own terms).
API_HINTS = {
    "register": 'Register it first: POST /api/v1/sync/tables/register {{"schema_name": "{schema}", '
                '"table_name": "{table}"}}.',
    "incremental_key": "Send the incremental_key field (a column of the table), or register the table with "
                       "incremental_key (POST /api/v1/sync/tables/register).",
    "primary_key": "Register the table with primary_key (POST /api/v1/sync/tables/register).",
    "exclude_columns": "Leave such columns out with exclude_columns (POST /api/v1/sync/tables/register).",
}
FORM_LOGIN = ("POST /auth/token takes form fields, not JSON: send username and password as "
              "application/x-www-form-urlencoded (the OAuth2 password flow), e.g. "
              "curl -d username=NAME -d password=SECRET .../api/v1/auth/token.")

# Most specific first: the first class an error is an instance of decides its status.
_STATUS_OF: tuple[tuple[type[SfduckError], int], ...] = (
    (LoginRefusedError, 401),
    (MissingIncrementalKeyError, 422),
    (JobNotFoundError, 404),
    (TableNotFoundError, 404),
    (NotRegisteredError, 409),
    (SyncAlreadyRunningError, 409),
    (NameCollisionError, 409),
    (InvalidIdentifierError, 400),
    (UnsafeFilterError, 400),
    (StoreBusyError, 503),
    (ConfigError, 503),
    (SourceError, 503),
)
_ERRORS: dict[int | str, dict[str, Any]] = {
    code: {"model": s.ErrorOut, "description": text}
    for code, text in ((400, "Bad input"), (401, "Not logged in"), (403, "Needs the admin role"),
                       (404, "Unknown table or job"), (409, "Not registered, or already running"),
                       (422, "Malformed request"), (503, "Snowflake or the DuckDB file is unavailable"))
}


class ApiPrefix:
    """ASGI middleware that hands every request under API_PREFIX to the API, whatever its path
    holds. A router's Mount matches paths with a regex that stops at a newline, so such a request
    fell through to the dashboard's router and got a plain-text 404 instead of the API's JSON."""

    def __init__(self, app: ASGIApp, api: ASGIApp) -> None:
        self.app, self.api = app, api

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        path = scope.get("path", "")
        if scope["type"] in ("http", "websocket") and (path == API_PREFIX or path.startswith(API_PREFIX + "/")):
            await self.api({**scope, "root_path": scope.get("root_path", "") + API_PREFIX}, receive, send)
        else:
            await self.app(scope, receive, send)


def status_of(exc: SfduckError) -> int:
    for kind, code in _STATUS_OF:
        if isinstance(exc, kind):
            return 502 if code == 503 and isinstance(exc, SourceError) and exc.refused else code
    return 400


def create_api(get_service: Callable[[], Service]) -> FastAPI:
    """The API over `get_service()` (the process's shared service, looked up per request)."""
    api = FastAPIOffline(  # Swagger UI and ReDoc from files the server serves itself: docs work offline
        title="sfduck API",
        version="1",
        description="Copy Snowflake tables into DuckDB: discover, register, sync, watch, schedule. "
                    "Log in at `POST /auth/token`, then send `Authorization: Bearer <access_token>`.",
        docs_url="/docs",
        openapi_url="/openapi.json",
        redoc_url="/redoc",
        static_url="/docs-assets",
        responses=_ERRORS,
    )
    bearer = OAuth2PasswordBearer(tokenUrl="auth/token", auto_error=False)

    def service() -> Service:
        return get_service()

    Svc = Annotated[Service, Depends(service)]

    def reader(svc: Svc, token: Annotated[str | None, Depends(bearer)]) -> Principal:
        principal = svc.authenticate(token)
        if principal is None:
            raise HTTPException(401, "Not logged in, or the token expired or was revoked: get a new one at "
                                     "POST /api/v1/auth/token.")
        return principal

    def admin(principal: Annotated[Principal, Depends(reader)]) -> Principal:
        if not principal.is_admin:
            raise HTTPException(403, f"This needs the admin role; {principal.username} has "
                                     f"{', '.join(principal.roles)}.")
        return principal

    Reader = Annotated[Principal, Depends(reader)]
    Admin = Annotated[Principal, Depends(admin)]

    # --- errors --------------------------------------------------------------------------------

    @api.exception_handler(SfduckError)
    async def sfduck_error(_: Request, exc: SfduckError) -> JSONResponse:
        code = status_of(exc)
        headers = {"WWW-Authenticate": "Bearer"} if code == 401 else None
        if isinstance(exc, LoginRefusedError) and exc.retry_after_s > 0:
            code, headers = 429, {"Retry-After": str(int(exc.retry_after_s + 0.999))}
        body: dict[str, Any] = {"detail": worded(exc, API_HINTS)}
        if exc.remedy:
            body.update(remedy=exc.remedy, message=str(exc), facts=exc.facts)
        if isinstance(exc, MissingIncrementalKeyError):
            body["detail"] = f"Malformed request: body.incremental_key: {body['detail']}"
        return JSONResponse(body, code, headers)

    @api.exception_handler(HTTPException)
    async def http_error(_: Request, exc: HTTPException) -> JSONResponse:
        headers = dict(exc.headers or {})
        if exc.status_code == 401:
            headers["WWW-Authenticate"] = "Bearer"
        return JSONResponse({"detail": str(exc.detail)}, exc.status_code, headers or None)

    @api.exception_handler(RequestValidationError)
    async def malformed(request: Request, exc: RequestValidationError) -> JSONResponse:
        if request.url.path.endswith("/auth/token") and "form" not in request.headers.get("content-type", ""):
            return JSONResponse({"detail": f"Malformed request: {FORM_LOGIN}"}, 422)
        problems = "; ".join(f"{'.'.join(str(p) for p in e.get('loc', ()))}: {e.get('msg')}" for e in exc.errors())
        return JSONResponse({"detail": f"Malformed request: {problems}"}, 422)

    @api.exception_handler(Exception)
    async def internal(_: Request, exc: Exception) -> JSONResponse:
        _log.exception("API request failed")
        return JSONResponse({"detail": f"Internal error ({type(exc).__name__}); see the server log."}, 500)

    # --- auth and health -------------------------------------------------------------------------

    @api.post("/auth/token", response_model=s.TokenOut, tags=["auth"],
              responses={429: {"model": s.ErrorOut, "description": "Too many failed logins"}})
    def token(svc: Svc, form: Annotated[OAuth2PasswordRequestForm, Depends()], request: Request) -> s.TokenOut:
        """OAuth2 password flow: the dashboard's users, roles and login throttling."""
        address = request.client.host if request.client else None
        access_token, session = svc.login(form.username, form.password, address)
        return s.TokenOut(access_token=access_token, expires_in=max(0, int(session.expires_at - time.time())))

    @api.post("/auth/logout", status_code=204, response_class=Response, tags=["auth"])
    def logout(svc: Svc, who: Reader) -> Response:
        """Revoke the presented token: refused from now on, by every process; the user's other tokens stay."""
        svc.tokens.revoke(who.session)
        return Response(status_code=204)

    health_cache: dict[str, tuple[float, s.CheckOut]] = {}
    health_lock = threading.Lock()

    @api.get("/health", response_model=s.HealthOut, tags=["health"],
             responses={503: {"model": s.HealthOut, "description": "Something is unreachable"}})
    def health(svc: Svc) -> JSONResponse:
        """DuckDB and Snowflake reachability, without a token (Snowflake's answer is cached briefly)."""
        duck = _check(lambda: svc.engine.store.ping())
        if duck.ok and (holder := svc.engine.store.data_held_by()) is not None:
            # an analyst's DuckDB reading the file is not an outage: reads keep being served, syncs wait
            duck = s.CheckOut(ok=True, detail=f"held by {holder}")
        with health_lock:
            cached = health_cache.get("snowflake")
            if cached is None or time.monotonic() - cached[0] > HEALTH_CACHE_S:
                cached = (time.monotonic(), _check(svc.engine.ping_snowflake))
                health_cache["snowflake"] = cached
        body = s.HealthOut(status="ok" if duck.ok and cached[1].ok else "degraded", duckdb=duck,
                           snowflake=cached[1])
        return JSONResponse(body.model_dump(), 200 if body.status == "ok" else 503)

    # --- the spec's endpoints --------------------------------------------------------------------

    @api.get("/sync/tables", response_model=list[s.RegisteredTableOut], tags=["sync"])
    def registered_tables(svc: Svc, _: Reader) -> list[dict[str, Any]]:
        """The registered tables: their `table_id`, keys, schedule and latest sync."""
        return svc.registered_tables()

    @api.get("/sync/tables/{schema_name}", response_model=list[s.TableOut], tags=["sync"])
    def list_tables(schema_name: str, svc: Svc, _: Reader) -> list[dict[str, Any]]:
        """The schema's tables with their size, as Snowflake reports them, and whether each is
        registered (with its `table_id`)."""
        tables = svc.engine.list_tables(schema_name)
        ids = {r.table_name: r.table_id for r in svc.engine.store.list_registrations()
               if r.schema_name == schema_name}
        return [{**t.as_dict(), "registered": t.table_name in ids, "table_id": ids.get(t.table_name)}
                for t in tables]

    @api.post("/sync/tables/register", response_model=s.RegistrationOut, tags=["sync"])
    def register(body: s.RegisterIn, svc: Svc, who: Admin) -> dict[str, Any]:
        """Verify the table exists in Snowflake and allow it to be synced."""
        reg = svc.engine.register(body.schema_name, body.table_name, incremental_key=body.incremental_key,
                                  primary_key=body.primary_key, detect_deletes=body.detect_deletes,
                                  include_columns=body.include_columns, exclude_columns=body.exclude_columns,
                                  actor=who.username)
        return reg.as_dict()

    @api.post("/sync/start", response_model=s.StartOut, status_code=202, tags=["sync"])
    def start(body: s.StartIn, svc: Svc, who: Admin) -> s.StartOut:
        """Start a sync in the background; poll `GET /sync/status/{sync_id}`."""
        bg = svc.syncs.start(SyncRequest(
            body.schema_name, body.table_name, strategy=body.strategy, transport=body.transport, where=body.where,
            incremental_key=body.incremental_key, primary_key=body.primary_key,
            detect_deletes=body.detect_deletes, force=body.force, trigger=body.trigger, started_by=who.username))
        job = svc.engine.store.get_job(bg.sync_id)
        return s.StartOut(sync_id=bg.sync_id, status=job["status"] if job else "pending")

    @api.post("/sync/start-all", response_model=list[s.StartAllItem], status_code=202, tags=["sync"])
    def start_all(svc: Svc, who: Admin, body: Annotated[s.StartAllIn | None, Body()] = None
                  ) -> list[dict[str, Any]]:
        """Start a sync of every registered table (each says whether it started, and why not).
        The body is optional (default: full syncs)."""
        return svc.start_all((body or s.StartAllIn()).strategy, "api", who.username)

    @api.get("/sync/status/{sync_id}", response_model=s.JobOut, tags=["sync"])
    def status(sync_id: str, svc: Svc, _: Reader) -> dict[str, Any]:
        """One job, with live progress while it runs in this server."""
        job = svc.job(sync_id)
        if job is None:
            raise JobNotFoundError(f"No sync job with id {sync_id!r}.")
        return job

    @api.get("/sync/tables/status/{table_id}", response_model=s.TableStatusOut, tags=["sync"])
    def table_status(table_id: str, svc: Svc, _: Reader, limit: Annotated[int, Query(ge=1, le=1000)] = 50,
                     offset: Annotated[int, Query(ge=0, le=10**9)] = 0) -> dict[str, Any]:
        """A registered table's sync status and its jobs, newest first, paged."""
        reg = svc.engine.store.registration_by_id(table_id)
        jobs, total = svc.engine.store.find_jobs(JobQuery(table_id=table_id), limit, offset)
        return {"registration": reg.as_dict(),
                "sync_status": svc.engine.store.sync_status(reg.schema_name, reg.table_name),
                "jobs": [_with_progress(svc, j) for j in jobs], "total": total, "limit": limit, "offset": offset}

    @api.get("/sync/tables/{schema_name}/{table_name}", response_model=s.DescriptionOut, tags=["sync"])
    def describe(schema_name: str, table_name: str, svc: Svc, _: Reader) -> dict[str, Any]:
        """A Snowflake table's columns with their Snowflake and DuckDB types, and its primary key.
        (Declared after /sync/tables/status/{table_id}, which would otherwise be read as a table.)"""
        return svc.engine.describe(schema_name, table_name).as_dict()

    @api.delete("/sync/tables/{schema_name}/{table_name}", response_model=s.RegistrationOut, tags=["sync"])
    def unregister(schema_name: str, table_name: str, svc: Svc, who: Admin) -> dict[str, Any]:
        """Stop syncing a table; its history and synced data stay."""
        return svc.engine.unregister(schema_name, table_name, actor=who.username).as_dict()

    @api.get("/sync/jobs", response_model=s.JobPage, tags=["sync"])
    def jobs(svc: Svc, _: Reader,
             table_id: str | None = None, schema_name: str | None = None, table_name: str | None = None,
             status: Annotated[s.JobStatus | None, Query(description=s.JOB_STATUS_HELP)] = None,
             trigger: Literal[TRIGGERS] | None = None,  # type: ignore[valid-type]
             started_by: str | None = None, since: dt.datetime | None = None, until: dt.datetime | None = None,
             limit: Annotated[int, Query(ge=1, le=1000)] = 100,
             offset: Annotated[int, Query(ge=0, le=10**9)] = 0) -> dict[str, Any]:
        """Jobs of every table, newest first, filtered and paged."""
        query = JobQuery(table_id=table_id, schema_name=schema_name, table_name=table_name, status=status,
                         trigger=trigger, started_by=started_by, since=_aware(since), until=_aware(until))
        found, total = svc.engine.store.find_jobs(query, limit, offset)
        return {"jobs": [_with_progress(svc, j) for j in found], "total": total, "limit": limit, "offset": offset}

    @api.post("/sync/cancel/{sync_id}", response_model=s.JobOut, tags=["sync"])
    def cancel(sync_id: str, svc: Svc, _: Admin) -> dict[str, Any]:
        """Ask a running sync to stop; it ends `cancelled` within seconds, its table unchanged."""
        return _with_progress(svc, svc.engine.cancel(sync_id))

    @api.post("/sync/restore", response_model=s.JobOut, tags=["sync"])
    def restore(body: s.RestoreIn, svc: Svc, who: Admin) -> dict[str, Any]:
        """Bring a table back to the version an earlier sync left (a DuckLake target); a job of its own."""
        return _with_progress(svc, svc.engine.restore(body.schema_name, body.table_name, body.sync_id,
                                                      trigger=body.trigger, started_by=who.username))

    @api.post("/lake/retention", response_model=s.RetentionOut, tags=["lake"])
    def retention(body: s.RetentionIn, svc: Svc, who: Admin) -> dict[str, Any]:
        """Expire the lake's versions no rule keeps and delete the files nothing uses any more."""
        return svc.apply_retention(who.username, keep_versions=body.keep_versions, keep_days=body.keep_days,
                                   dry_run=body.dry_run)

    # --- schedules -------------------------------------------------------------------------------

    @api.get("/schedules", response_model=list[s.ScheduleOut], tags=["schedules"])
    def schedules(svc: Svc, _: Reader) -> list[dict[str, Any]]:
        return [sched.as_dict() for sched in svc.schedules.list()]

    @api.put("/schedules/{table_id}", response_model=s.ScheduleOut, tags=["schedules"])
    def save_schedule(table_id: str, body: s.ScheduleIn, svc: Svc, who: Admin) -> dict[str, Any]:
        """Create or replace a registered table's schedule (a cron expression or an interval)."""
        reg = svc.engine.store.registration_by_id(table_id)
        return svc.schedules.save(reg, cron=body.cron, timezone=body.timezone, interval_s=body.interval_s,
                                  strategy=body.strategy, enabled=body.enabled, actor=who.username).as_dict()

    @api.post("/schedules/{table_id}/pause", response_model=s.ScheduleOut, tags=["schedules"])
    def pause(table_id: str, svc: Svc, who: Admin) -> dict[str, Any]:
        return svc.schedules.set_enabled(table_id, False, who.username).as_dict()

    @api.post("/schedules/{table_id}/resume", response_model=s.ScheduleOut, tags=["schedules"])
    def resume(table_id: str, svc: Svc, who: Admin) -> dict[str, Any]:
        return svc.schedules.set_enabled(table_id, True, who.username).as_dict()

    @api.delete("/schedules/{table_id}", response_model=s.ScheduleOut, tags=["schedules"])
    def delete_schedule(table_id: str, svc: Svc, who: Admin) -> dict[str, Any]:
        removed = svc.schedules.require(table_id)
        svc.schedules.delete(table_id, who.username)
        return removed.as_dict()

    return api


def _check(probe: Callable[[], Any]) -> s.CheckOut:
    try:
        probe()
        return s.CheckOut(ok=True, detail="reachable")
    except SfduckError as exc:
        return s.CheckOut(ok=False, detail=str(exc))
    except Exception as exc:
        return s.CheckOut(ok=False, detail=f"{type(exc).__name__}: {exc}")


def _aware(moment: dt.datetime | None) -> dt.datetime | None:
    """Query times without a zone are UTC, like every time sfduck records."""
    return moment.replace(tzinfo=dt.UTC) if moment is not None and moment.tzinfo is None else moment


def _with_progress(svc: Service, job: dict[str, Any]) -> dict[str, Any]:
    return {**job, "progress": svc.live_progress(job["sync_id"]) if job["status"] in ACTIVE_JOB_STATUSES
            else None}
