"""Command line for automation (cron, CI): JSON on stdout, one-line errors on stderr.

Exit codes: 0 success, 1 a failure the user can act on (bad input, Snowflake refused, sync
failed), 2 usage errors and internal bugs. Progress goes to stderr so stdout stays parseable.
"""

from __future__ import annotations

import argparse
import getpass
import json
import os
import sys
import time
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any

from sfduck_core import local_server
from sfduck_core.config import load_settings
from sfduck_core.errors import (
    ConfigError,
    JobNotFoundError,
    ServerUnreachableError,
    SfduckError,
    TableNotFoundError,
    worded,
)
from sfduck_core.files import owner_only_from_now_on
from sfduck_core.job_status import SUCCESS_STATUSES
from sfduck_core.plugins import command, snowflake_source
from sfduck_core.progress import SyncProgress, ignore_progress
from sfduck_core.suggest import did_you_mean

if TYPE_CHECKING:
    from sfduck_core.engine import SyncEngine
    from sfduck_core.remote import RemoteServer

# Commands that read this machine's settings and files; every other one also runs through --server.
LOCAL_ONLY = ("doctor", "reader")


# How the command line words the fix of an error (the API and the dashboard word the same fixes their way).
CLI_HINTS = {
    "register": "Register it first: sfduck register {schema} {table}",
    "incremental_key": "Register it with one (sfduck register {schema} {table} --incremental-key COL) or pass "
                       "--incremental-key COL to sync.",
    "primary_key": "Register one: sfduck register {schema} {table} --primary-key COL[,COL...]",
    "exclude_columns": "Leave such columns out: sfduck register SCHEMA TABLE --exclude-columns C1,C2",
}


def _csv(value: str) -> list[str]:
    return [v.strip() for v in value.split(",") if v.strip()]


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="sfduck", description="Copy Snowflake tables into DuckDB.")
    parser.add_argument("--server", metavar="URL",
                        help="drive this running sfduck server over its API instead of the DuckDB file "
                             "(default: SFDUCK_SERVER_URL; token from SFDUCK_API_TOKEN, or SFDUCK_API_USER and "
                             "SFDUCK_API_PASSWORD)")
    sub = parser.add_subparsers(dest="command", required=True)

    p = sub.add_parser("tables", help="list the tables of a schema with their size")
    p.add_argument("schema", nargs="?")

    p = sub.add_parser("describe", help="columns, types and primary key of a table")
    p.add_argument("schema")
    p.add_argument("table")

    p = sub.add_parser("register", help="allow a table to be synced")
    p.add_argument("schema")
    p.add_argument("table")
    p.add_argument("--incremental-key")
    p.add_argument("--primary-key", type=_csv, help="COL[,COL...] (default: Snowflake's primary key)")
    p.add_argument("--detect-deletes", action="store_true", help="incremental syncs also remove deleted rows")
    p.add_argument("--columns", type=_csv, default=[], help="only these columns")
    p.add_argument("--exclude-columns", type=_csv, default=[], help="all columns but these")

    p = sub.add_parser("sync", help="copy a registered table into DuckDB")
    p.add_argument("schema")
    p.add_argument("table")
    p.add_argument("--strategy", choices=["full", "incremental"], default="full")
    p.add_argument("--incremental-key")
    p.add_argument("--primary-key", type=_csv)
    p.add_argument("--where", help="a boolean filter over the table's columns (validated, not raw SQL)")
    p.add_argument("--transport", choices=["auto", "stage", "arrow"], default="auto")
    p.add_argument("--detect-deletes", action="store_true", default=None)
    p.add_argument("--force", action="store_true", help="sync even if the table looks unchanged")
    p.add_argument("--progress", action=argparse.BooleanOptionalAction, default=None,
                   help="progress lines on stderr (default: only when stderr is a terminal, so a failure "
                        "under cron is exactly one line)")
    p.add_argument("--quiet", action="store_true", help="same as --no-progress")

    p = sub.add_parser("status", help="one sync job")
    p.add_argument("sync_id")

    p = sub.add_parser("cancel", help="stop a running sync (of any process); the table stays as it was")
    p.add_argument("sync_id")

    p = sub.add_parser("history", help="sync jobs of a table, newest first")
    p.add_argument("schema")
    p.add_argument("table")

    p = sub.add_parser("unregister", help="stop syncing a table (keeps history and data)")
    p.add_argument("schema")
    p.add_argument("table")

    p = sub.add_parser("restore", help="bring a table back to the version an earlier sync left (a DuckLake "
                                       "target only); recorded as a job")
    p.add_argument("schema")
    p.add_argument("table")
    p.add_argument("sync_id", help="the earlier sync, from `history`")

    p = sub.add_parser("retention", help="expire a lake's old versions and delete the files nothing uses any more "
                                         "(default: SFDUCK_LAKE_KEEP_VERSIONS and SFDUCK_LAKE_KEEP_DAYS)")
    p.add_argument("--keep-versions", type=int, metavar="K", help="keep the last K versions of each table")
    p.add_argument("--keep-days", type=float, metavar="N", help="keep every snapshot of the last N days")
    p.add_argument("--dry-run", action="store_true", help="say what would be expired; change nothing")

    text = ("check the Snowflake account, rights, transports and types before the first sync (exit 1 if a check "
            "fails; runs locally, on this machine's settings)")
    p = sub.add_parser("doctor", help=text, description=text)
    p.add_argument("--json", action="store_true", help="the report as JSON on stdout")

    text = ("print the lines that open the synced data from your own DuckDB, offline (runs locally: the paths are "
            "this machine's)")
    p = sub.add_parser("reader", help=text, description=text)
    form = p.add_mutually_exclusive_group()
    form.add_argument("--python", dest="form", action="store_const", const="python",
                      help="a Python script leaving the connection in `con` (default)")
    form.add_argument("--sql", dest="form", action="store_const", const="sql",
                      help="SQL for a DuckDB of the same version on this machine")
    form.add_argument("--cli", dest="form", action="store_const", const="cli", help="the DuckDB command line")
    p.add_argument("schema", nargs="?", help="with TABLE: the first query counts its rows")
    p.add_argument("table", nargs="?")

    sub.add_parser("emulator", help="run the embedded Snowflake emulator and print how to reach it "
                                    "(see `emulator --help`)")
    return parser


class _StderrProgress:
    """Prints a line when the phase or file changes, and row counts at most once a second."""

    def __init__(self) -> None:
        self._last_key: tuple[Any, ...] = ()
        self._last_time = 0.0

    def __call__(self, p: SyncProgress) -> None:
        key = (p.phase, p.files_done)
        now = time.monotonic()
        if key == self._last_key and now - self._last_time < 1.0:
            return
        self._last_key, self._last_time = key, now
        rows = f" rows {p.rows_done:,}/{p.rows_total:,}" if p.rows_total else ""
        print(f"[{p.phase}] {p.message}{rows}", file=sys.stderr, flush=True)


def _print(obj: Any) -> None:
    print(json.dumps(obj, indent=2, default=str))


def _progress_listener(args: argparse.Namespace) -> Callable[[SyncProgress], None]:
    show = sys.stderr.isatty() if args.progress is None else args.progress
    return _StderrProgress() if show and not args.quiet else ignore_progress


def run_remote(args: argparse.Namespace, server: RemoteServer, default_schema: str | None) -> int:
    """The same commands, through a running server's API (so cron never competes for the file)."""
    from sfduck_core.remote import quote

    if getattr(args, "schema", None) is None and default_schema:
        args.schema = default_schema
    if args.command == "tables":
        if not args.schema:
            raise SfduckError("With --server, name the schema: sfduck --server URL tables SCHEMA.")
        _print(server.call("GET", f"/sync/tables/{quote(args.schema)}"))
    elif args.command == "describe":
        _print(server.call("GET", f"/sync/tables/{quote(args.schema)}/{quote(args.table)}"))
    elif args.command == "register":
        _print(server.call("POST", "/sync/tables/register", {
            "schema_name": args.schema, "table_name": args.table, "incremental_key": args.incremental_key,
            "primary_key": args.primary_key, "detect_deletes": args.detect_deletes,
            "include_columns": args.columns, "exclude_columns": args.exclude_columns}))
    elif args.command == "unregister":
        _print(server.call("DELETE", f"/sync/tables/{quote(args.schema)}/{quote(args.table)}"))
    elif args.command == "sync":
        job = server.sync({"schema_name": args.schema, "table_name": args.table, "strategy": args.strategy,
                           "transport": args.transport, "where": args.where, "incremental_key": args.incremental_key,
                           "primary_key": args.primary_key, "detect_deletes": args.detect_deletes,
                           "force": args.force, "trigger": "cli"}, _progress_listener(args))
        _print(job)
        if job["status"] not in SUCCESS_STATUSES:
            verb = "was cancelled" if job["status"] == "cancelled" else "failed"
            raise SfduckError(f"Sync {job['sync_id']} {verb}: {job.get('error_message')}")
    elif args.command == "status":
        _print(server.call("GET", f"/sync/status/{quote(args.sync_id)}"))
    elif args.command == "cancel":
        _print(server.call("POST", f"/sync/cancel/{quote(args.sync_id)}"))
    elif args.command == "history":
        jobs = server.call("GET", "/sync/jobs", schema_name=args.schema, table_name=args.table, limit=1000)["jobs"]
        if not jobs:
            known = [f"{t['schema_name']}.{t['table_name']}" for t in server.call("GET", "/sync/tables")]
            name = f"{args.schema}.{args.table}"
            if name not in known:
                raise TableNotFoundError(f"{name} was never registered, so it has no sync history."
                                         + did_you_mean(name, known))
        _print(jobs)
    elif args.command == "restore":
        _print(server.call("POST", "/sync/restore", {"schema_name": args.schema, "table_name": args.table,
                                                     "sync_id": args.sync_id, "trigger": "cli"}))
    elif args.command == "retention":
        _print(server.call("POST", "/lake/retention", {"keep_versions": args.keep_versions,
                                                       "keep_days": args.keep_days, "dry_run": args.dry_run}))
    return 0


def _demo_server(url: str) -> RemoteServer | None:
    """The demo server on this machine, logged in as its demo admin unless the environment names a
    user; None when it does not answer (then the command runs locally)."""
    from sfduck_core.remote import TOKEN_ENV, USER_ENV, RemoteServer
    from sfduck_core.users import ADMIN, DEMO_PASSWORDS

    try:
        if os.environ.get(TOKEN_ENV) or os.environ.get(USER_ENV):
            return RemoteServer(url)
        return RemoteServer(url, credentials=(ADMIN, DEMO_PASSWORDS[ADMIN]))
    except ServerUnreachableError:
        return None


def _reader(args: argparse.Namespace) -> int:
    """The analyst's lines for this machine's target (no Snowflake, no server needed)."""
    from sfduck_core.reader import reader_text

    if bool(args.schema) != bool(args.table):
        raise SfduckError("Name both SCHEMA and TABLE (or neither): sfduck reader [SCHEMA TABLE].")
    print(reader_text(load_settings().storage, args.form or "python", args.schema, args.table), end="")
    return 0


def _doctor(args: argparse.Namespace) -> int:
    """Human lines by default (it is run by a person, once); `--json` for automation."""
    from sfduck_core.doctor import iter_lines, run_doctor, unusable_settings

    try:
        settings = load_settings()
    except ConfigError as exc:
        report = unusable_settings(exc)
    else:
        report = run_doctor(settings, snowflake_source(settings))
    if args.json:
        _print(report.as_dict())
    else:
        print("\n".join(iter_lines(report)), flush=True)
    return 0 if report.ok else 1


def _os_user() -> str | None:
    """Who runs the command, as the audit records it (the login name, not a secret)."""
    try:
        return getpass.getuser()
    except (KeyError, OSError):  # no name for this uid (containers)
        return None


def run(args: argparse.Namespace) -> int:
    url = args.server
    if args.command in LOCAL_ONLY:
        if url:
            print(f"note: `{args.command}` runs locally (on this machine's settings and files); --server is "
                  "not used.", file=sys.stderr)
        return _doctor(args) if args.command == "doctor" else _reader(args)
    settings = load_settings()
    url = url or settings.server_url
    if url:
        from sfduck_core.remote import RemoteServer

        return run_remote(args, RemoteServer(url), settings.snowflake.schema)
    if settings.demo and (running := local_server.running_server(settings.duckdb_path.parent)):
        # demo mode: the running server already has the emulator up and owns the file
        server = _demo_server(running["url"])
        if server is not None:
            return run_remote(args, server, running.get("schema"))
    from sfduck_core.engine import SyncEngine
    from sfduck_core.notify import Notifier

    notifier = Notifier(settings.notify_urls, settings.notify_on_success)
    engine = SyncEngine(settings, snowflake_source(settings), on_job_end=notifier.job_ended)
    try:
        return _run_local(args, engine)
    finally:
        notifier.flush()


def _run_local(args: argparse.Namespace, engine: SyncEngine) -> int:
    from sfduck_core.engine import SyncRequest

    user = _os_user()
    if args.command == "tables":
        _print([t.as_dict() for t in engine.list_tables(args.schema)])
    elif args.command == "describe":
        _print(engine.describe(args.schema, args.table).as_dict())
    elif args.command == "register":
        reg = engine.register(args.schema, args.table, incremental_key=args.incremental_key,
                              primary_key=args.primary_key, detect_deletes=args.detect_deletes,
                              include_columns=args.columns, exclude_columns=args.exclude_columns, actor=user)
        _print(reg.as_dict())
    elif args.command == "unregister":
        _print(engine.unregister(args.schema, args.table, actor=user).as_dict())
    elif args.command == "sync":
        request = SyncRequest(args.schema, args.table, strategy=args.strategy, transport=args.transport,
                              where=args.where, incremental_key=args.incremental_key,
                              primary_key=args.primary_key, detect_deletes=args.detect_deletes, force=args.force,
                              trigger="cli", started_by=user)
        job = engine.sync(request, on_progress=_progress_listener(args))
        _print(job)
    elif args.command == "status":
        engine.store.reap_dead_jobs()
        job = engine.store.get_job(args.sync_id)
        if job is None:
            raise JobNotFoundError(f"No sync job with id {args.sync_id!r}.")
        _print(job)
    elif args.command == "cancel":
        _print(engine.cancel(args.sync_id))
    elif args.command == "history":
        engine.store.reap_dead_jobs()
        _print(engine.store.table_history(engine.default_schema(args.schema), args.table))
    elif args.command == "restore":
        _print(engine.restore(args.schema, args.table, args.sync_id, trigger="cli", started_by=user))
    elif args.command == "retention":
        from sfduck_core.retention import apply_retention, policy_from

        policy = policy_from(engine.settings, args.keep_versions, args.keep_days)
        _print(apply_retention(engine.store, policy, actor=user, dry_run=args.dry_run))
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    """`python -m sfduck_core` and the `sfduck` command."""
    owner_only_from_now_on()
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv[:1] == ["emulator"]:  # its own options (--port, --rows, ...) live in the emulator
        try:
            emulator = command("emulator")
        except SfduckError as exc:
            print(f"error: {exc}", file=sys.stderr)
            return 1
        return emulator(argv[1:])
    args = build_parser().parse_args(argv)
    try:
        return run(args)
    except SfduckError as exc:
        print(f"error: {worded(exc, CLI_HINTS)}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("error: interrupted", file=sys.stderr)
        return 130
    except Exception as exc:  # a bug: still one line, never a traceback for the user
        print(f"internal error ({type(exc).__name__}): {exc}", file=sys.stderr)
        return 2


def console_main() -> None:
    """The `sfduck` console command."""
    sys.exit(main())
