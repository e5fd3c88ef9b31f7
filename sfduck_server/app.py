"""The server process: the dashboard at /, the HTTP API at /api/v1 (docs at /api/v1/docs).

Served by `streamlit run sfduck_server/app.py` (what ./scripts/dashboard.sh does), which finds
`app` below and runs it with uvicorn. One process owns the DuckDB file: the dashboard, the API
and the scheduler share one `Service` (one executor, one throttle). Its lifespan starts the
scheduler and, on SIGTERM, cancels running syncs (their jobs end `cancelled`, tables unchanged)
before the process exits.
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import anyio
import streamlit as st
from starlette.middleware import Middleware

from sfduck_core import local_server
from sfduck_core.errors import SfduckError
from sfduck_core.service import Service, shared_service
from sfduck_server.api import ApiPrefix, create_api
from sfduck_server.banner import print_banner, server_url
from sfduck_ui.context import configured_cookie_key

SHUTDOWN_WAIT_S = 20.0  # for running syncs to stop; the whole exit stays within 30 s
_log = logging.getLogger("sfduck.server")


def process_service() -> Service:
    return shared_service(configured_cookie_key())


@contextlib.asynccontextmanager
async def lifespan(_: Any) -> AsyncIterator[dict[str, Any]]:
    service: Service | None = None
    try:
        service = process_service()
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


app = st.App(Path(__file__).resolve().parents[1] / "streamlit_app.py",
             middleware=[Middleware(ApiPrefix, api=create_api(process_service))], lifespan=lifespan)
