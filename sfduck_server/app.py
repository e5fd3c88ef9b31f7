"""The server process: the dashboard at /, the HTTP API at /api/v1 (docs at /api/v1/docs).

Served by `streamlit run sfduck_server/app.py` (what ./scripts/dashboard.sh does), which finds
`app` below and runs it with uvicorn. One process owns the DuckDB file: the dashboard, the API
and the scheduler share one `Service` (one executor, one throttle). Its lifespan starts the
scheduler and, on SIGTERM, cancels running syncs (their jobs end `cancelled`, tables unchanged)
before the process exits.
"""

from __future__ import annotations

import contextlib
import functools
import logging
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import anyio
import streamlit as st
from starlette.middleware import Middleware

from sfduck_core import local_server
from sfduck_core.config import DEFAULT_MAX_BODY_BYTES
from sfduck_core.errors import SfduckError
from sfduck_core.exposure import demo_foreign_host_refusal, demo_login_refusal
from sfduck_core.files import owner_only_from_now_on
from sfduck_core.service import Service, shared_service
from sfduck_server.api import ApiPrefix, create_api
from sfduck_server.banner import print_banner, server_url
from sfduck_server.demo_host import DemoHostCheck
from sfduck_server.limits import BodyLimit, cap_websocket_messages
from sfduck_server.proxies import ClientAddress, TrustedProxies, take_over_from_uvicorn
from sfduck_server.session_cookie import session_cookie_routes
from sfduck_ui.auth import SESSION_COOKIE, SESSION_COOKIE_ROUTE, served_address
from sfduck_ui.context import configured_cookie_key

owner_only_from_now_on()  # before anything is written: the DuckDB file, a lake's files, logs
take_over_from_uvicorn()  # forwarded headers are believed from SFDUCK_TRUSTED_PROXIES only

SHUTDOWN_WAIT_S = 20.0  # for running syncs to stop; the whole exit stays within 30 s
_log = logging.getLogger("sfduck.server")


def process_service() -> Service:
    return shared_service(configured_cookie_key())


@functools.lru_cache(maxsize=4)
def _proxies_of(items: tuple[str, ...]) -> TrustedProxies:
    return TrustedProxies.of(items)


def trusted_proxies() -> TrustedProxies:
    """SFDUCK_TRUSTED_PROXIES; none while the configuration is broken."""
    try:
        return _proxies_of(process_service().settings.trusted_proxies)
    except SfduckError:
        return TrustedProxies()


def max_body_bytes() -> int:
    """SFDUCK_MAX_BODY_BYTES; the default while the configuration is broken (every page says why)."""
    try:
        return process_service().settings.max_body_bytes
    except SfduckError:
        return DEFAULT_MAX_BODY_BYTES


def foreign_host_refusal(host: str | None) -> str | None:
    """Why a demo server refuses a request addressed to another host; never while the configuration is broken."""
    try:
        return demo_foreign_host_refusal(process_service().settings, host)
    except SfduckError:
        return None


@contextlib.asynccontextmanager
async def lifespan(_: Any) -> AsyncIterator[dict[str, Any]]:
    service: Service | None = None
    try:
        service = process_service()
        service.login_refusal = demo_login_refusal(service.settings, served_address())
        if service.login_refusal:
            _log.error(service.login_refusal)
        service.start_background()
        url = server_url()
        print_banner(service.settings, url)
        # demo-mode commands use this server instead of starting an emulator of their own
        local_server.record(service.settings.duckdb_path.parent, url, service.engine.snowflake.schema)
    except SfduckError as exc:  # the dashboard shows the same message on every page; the API answers 503
        _log.error("sfduck is not configured correctly: %s", exc)
    try:
        yield {}
    finally:
        if service is not None:
            local_server.forget(service.settings.duckdb_path.parent)
            left = await anyio.to_thread.run_sync(service.shutdown, SHUTDOWN_WAIT_S)
            if left:
                _log.warning("syncs still running at exit (their jobs are reaped as failed): %s", ", ".join(left))


cap_websocket_messages(max_body_bytes)  # the dashboard's websocket: the same cap as request bodies
app = st.App(Path(__file__).resolve().parents[1] / "streamlit_app.py",
             routes=session_cookie_routes(process_service, SESSION_COOKIE, SESSION_COOKIE_ROUTE),
             middleware=[Middleware(ClientAddress, proxies=trusted_proxies),
                         Middleware(DemoHostCheck, refusal=foreign_host_refusal),
                         Middleware(BodyLimit, max_bytes=max_body_bytes),
                         Middleware(ApiPrefix, api=create_api(process_service))], lifespan=lifespan)
