"""The metadata database on SQLite and PostgreSQL alike: the same tests, the same answers."""

from __future__ import annotations

import datetime as dt
import os
import stat
import threading
from pathlib import Path

import pytest
import sqlalchemy as sa

from sfduck_core.errors import JobNotFoundError, NotRegisteredError, SfduckError, SyncAlreadyRunningError
from sfduck_core.metadata import JobQuery, MetadataDatabase, Registration, redact_url
from sfduck_core.metadata.engine import upgrade
from sfduck_core.metadata.tables import metadata as declared


def register(db: MetadataDatabase, table: str = "T", **settings: object) -> Registration:
    values = {"incremental_key": None, "primary_key": (), "detect_deletes": False, "include_columns": (),
              "exclude_columns": (), **settings}
    return db.registrations.upsert("S", table, **values)  # type: ignore[arg-type]


def start(db: MetadataDatabase, reg: Registration, sync_id: str, **options: object) -> None:
    values = {"trigger": "cli", "started_by": None, "queued": False, "pid": os.getpid(), "host": "here",
              "process_started": None, **options}
    db.jobs.start(reg, sync_id, "full", "auto", None, **values)  # type: ignore[arg-type]


@pytest.fixture
def db(metadata_url: str) -> MetadataDatabase:
    return MetadataDatabase(metadata_url)


def test_the_migrations_create_exactly_the_declared_tables(db: MetadataDatabase) -> None:
    """Alembic's autogenerate finds nothing to add or drop: migrations and tables.py agree."""
    from alembic.autogenerate import compare_metadata
    from alembic.migration import MigrationContext

    with db.engine.connect() as conn:
        diff = compare_metadata(MigrationContext.configure(conn), declared)
    structural = [d for d in diff if d[0] in ("add_table", "remove_table", "add_column", "remove_column",
                                              "add_index", "remove_index")]
    assert structural == []
    with db.engine.connect() as conn:
        assert conn.execute(sa.text("SELECT version_num FROM alembic_version")).scalar_one() == "0003"


def test_opening_again_migrates_nothing_and_keeps_the_rows(db: MetadataDatabase) -> None:
    reg = register(db)
    upgrade(db.engine)  # a second process opening it
    assert db.registrations.get("S", "T") == reg


def test_registrations_round_trip_lists_and_ids(db: MetadataDatabase) -> None:
    reg = register(db, incremental_key="UPDATED", primary_key=("ID", "K"), detect_deletes=True,
                   include_columns=("ID", "K", "UPDATED"))
    assert reg.primary_key == ("ID", "K") and reg.include_columns == ("ID", "K", "UPDATED") and reg.detect_deletes
    assert db.registrations.by_id(reg.table_id) == reg
    again = register(db, incremental_key="UPDATED", primary_key=("ID", "K"), detect_deletes=True,
                     include_columns=("ID", "K", "UPDATED"))
    assert again.table_id == reg.table_id and not again.full_sync_required
    other = register(db, "A")
    assert [r.table_name for r in db.registrations.list()] == ["A", "T"]
    db.registrations.deactivate("S", "A")
    assert [r.table_name for r in db.registrations.list()] == ["T"]
    assert [r.table_name for r in db.registrations.list(include_inactive=True)] == ["A", "T"]
    with pytest.raises(NotRegisteredError, match="S.A is not registered for syncing"):
        db.registrations.require_active("S", "A")
    with pytest.raises(NotRegisteredError):
        db.registrations.deactivate("S", "NOPE")
    assert db.registrations.by_id(other.table_id).status == "inactive"


def test_a_new_column_selection_of_a_synced_table_forgets_its_watermark(db: MetadataDatabase) -> None:
    reg = register(db, incremental_key="U")
    start(db, reg, "s1")
    db.jobs.complete(reg, "s1", {}, "arrow", watermark={"column": "U", "value": "5"}, source_row_count=3)
    changed = register(db, incremental_key="U", exclude_columns=("SECRET",))
    assert changed.full_sync_required
    status = db.jobs.sync_status("S", "T")
    assert status["watermark"] is None and status["source_row_count"] is None


def test_one_pending_or_running_job_per_table(db: MetadataDatabase) -> None:
    reg = register(db)
    start(db, reg, "s1", queued=True)
    assert db.jobs.get("s1")["status"] == "pending" and db.jobs.get("s1")["started_at"] is None
    with pytest.raises(SyncAlreadyRunningError, match="already running \\(sync_id s1, started .* UTC\\)"):
        start(db, reg, "s2")
    db.jobs.mark_running("s1")
    assert db.jobs.get("s1")["status"] == "running"
    assert db.jobs.sync_status("S", "T")["last_status"] == "running"
    db.jobs.fail(reg, "s1", "boom", {"duration_s": 1})
    start(db, reg, "s2")  # the table is free again
    assert [j["sync_id"] for j in db.jobs.running()] == ["s2"]


def test_the_database_itself_refuses_a_second_active_job(db: MetadataDatabase) -> None:
    """Whatever a process read before: the partial unique index stops the second insert."""
    from sfduck_core.metadata.tables import sync_jobs

    reg = register(db)
    start(db, reg, "s1")
    with pytest.raises(sa.exc.IntegrityError), db.write() as conn:
        conn.execute(sync_jobs.insert().values(
            sync_id="s2", table_id=reg.table_id, schema_name="S", table_name="T", strategy="full",
            transport="auto", status="running", created_at=dt.datetime.now(dt.UTC), cancel_requested=False))


def test_a_job_waiting_for_the_data_file_is_active_until_it_runs_again(db: MetadataDatabase) -> None:
    """Issue 21 item 5: `waiting` blocks a second sync of its table (in the database itself too),
    is listed as running, can be cancelled, and says whom it waits for until it runs again."""
    from sfduck_core.metadata.tables import sync_jobs

    reg = register(db)
    start(db, reg, "s1")
    db.jobs.mark_waiting("s1", "Waiting: the DuckDB file is open in python3 (pid 1234)")
    job = db.jobs.get("s1")
    assert job["status"] == "waiting" and "python3 (pid 1234)" in job["error_message"]
    assert db.jobs.sync_status("S", "T")["last_status"] == "waiting"
    assert [j["sync_id"] for j in db.jobs.running()] == ["s1"]
    with pytest.raises(SyncAlreadyRunningError):
        start(db, reg, "s2")
    with pytest.raises(sa.exc.IntegrityError), db.write() as conn:
        conn.execute(sync_jobs.insert().values(
            sync_id="s3", table_id=reg.table_id, schema_name="S", table_name="T", strategy="full",
            transport="auto", status="waiting", created_at=dt.datetime.now(dt.UTC), cancel_requested=False))
    db.jobs.request_cancel("s1")
    assert db.jobs.cancel_requested("s1")
    db.jobs.mark_running("s1")
    job = db.jobs.get("s1")
    assert job["status"] == "running" and job["error_message"] is None
    assert db.jobs.sync_status("S", "T")["last_status"] == "running"


def test_racing_starts_of_one_table_let_exactly_one_win(db: MetadataDatabase) -> None:
    reg = register(db)
    outcomes: list[str] = []
    barrier = threading.Barrier(6)

    def attempt(n: int) -> None:
        barrier.wait()
        try:
            start(db, reg, f"s{n}")
            outcomes.append("started")
        except SyncAlreadyRunningError:
            outcomes.append("refused")

    threads = [threading.Thread(target=attempt, args=(n,)) for n in range(6)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    assert sorted(outcomes) == ["refused"] * 5 + ["started"]
    assert len(db.jobs.running()) == 1


def test_completing_records_stats_status_and_last_success(db: MetadataDatabase) -> None:
    reg = register(db)
    start(db, reg, "s1")
    moment = dt.datetime(2026, 1, 2, 3, 4, 5, tzinfo=dt.timezone(dt.timedelta(hours=2)))
    db.jobs.complete(reg, "s1", {"rows_processed": 3, "at": moment}, "arrow", row_count=3,
                     source_last_modified=moment, columns=[["ID", "NUMBER"]])
    job = db.jobs.get("s1")
    assert job["status"] == "completed" and job["transport"] == "arrow"
    assert job["stats"] == {"rows_processed": 3, "at": moment.isoformat()}
    assert job["completed_at"].endswith("+00:00")
    status = db.jobs.sync_status("S", "T")
    assert status["last_success_sync_id"] == "s1" and status["row_count"] == 3
    assert status["source_last_modified"] == "2026-01-02T01:04:05+00:00"  # the same instant, in UTC
    assert status["columns"] == [["ID", "NUMBER"]]
    start(db, reg, "s2")
    db.jobs.complete(reg, "s2", {}, "none", status="skipped")
    assert db.jobs.sync_status("S", "T")["last_status"] == "skipped"
    with pytest.raises(ValueError):
        db.jobs.complete(reg, "s2", {}, "none", status="failed")
    assert db.jobs.sync_status("XX", "YY") is None


def test_cancel_is_a_flag_on_a_running_job_only(db: MetadataDatabase) -> None:
    reg = register(db)
    start(db, reg, "s1")
    assert not db.jobs.cancel_requested("s1")
    db.jobs.request_cancel("s1")
    assert db.jobs.cancel_requested("s1")
    db.jobs.fail(reg, "s1", "Cancelled", {}, status="cancelled")
    with pytest.raises(SfduckError, match="is not running \\(it is cancelled\\)"):
        db.jobs.request_cancel("s1")
    with pytest.raises(JobNotFoundError):
        db.jobs.request_cancel("nope")


def test_settling_a_dead_job_fails_it_and_frees_its_table(db: MetadataDatabase) -> None:
    reg = register(db)
    start(db, reg, "s1", pid=4242, host="elsewhere", process_started=12.5, trigger="api")
    assert db.jobs.unfinished() == [{"sync_id": "s1", "table_id": reg.table_id, "pid": 4242,
                                     "host": "elsewhere", "process_started": 12.5, "trigger": "api"}]
    db.jobs.settle_failed("s1", reg.table_id, "it stopped")
    job = db.jobs.get("s1")
    assert job["status"] == "failed" and job["error_message"] == "it stopped"
    assert db.jobs.sync_status("S", "T")["last_status"] == "failed"
    db.jobs.settle_failed("s1", reg.table_id, "again")  # a finished job is never settled twice
    assert db.jobs.get("s1")["error_message"] == "it stopped"


def _seed(db: MetadataDatabase) -> list[str]:
    """Six jobs of two tables, a day apart, alternately completed and failed."""
    from sfduck_core.metadata.tables import sync_jobs

    regs = [register(db, "A"), register(db, "B")]
    base = dt.datetime(2026, 3, 1, 12, tzinfo=dt.UTC)
    ids = []
    with db.write() as conn:
        for n in range(6):
            reg = regs[n % 2]
            sync_id = f"job-{n}"
            ids.append(sync_id)
            conn.execute(sync_jobs.insert().values(
                sync_id=sync_id, table_id=reg.table_id, schema_name="S", table_name=reg.table_name,
                strategy="full", transport="arrow", status="completed" if n % 3 else "failed",
                created_at=base + dt.timedelta(days=n), completed_at=base + dt.timedelta(days=n, seconds=5),
                stats={"rows_processed": n, "bytes_transferred": 10 * n, "duration_s": n / 2},
                trigger="schedule" if n < 3 else "api", started_by="ann" if n % 2 else None,
                cancel_requested=False))
    return ids


def test_a_page_of_jobs_newest_first_with_filters_and_a_total(db: MetadataDatabase) -> None:
    _seed(db)
    page, total = db.jobs.find(JobQuery(), limit=2, offset=1)
    assert total == 6 and [j["sync_id"] for j in page] == ["job-4", "job-3"]
    assert db.jobs.find(JobQuery(tables=("S.A",)))[1] == 3
    assert db.jobs.find(JobQuery(tables=("S.A", "S.B"), status="failed"))[1] == 2
    assert db.jobs.find(JobQuery(trigger="api", started_by="ann"))[1] == 2
    since = dt.datetime(2026, 3, 3, tzinfo=dt.UTC)
    assert [j["sync_id"] for j in db.jobs.find(JobQuery(since=since, until=since + dt.timedelta(days=2)))[0]] == \
        ["job-3", "job-2"]
    assert [j["sync_id"] for j in db.jobs.history("S", "B", limit=2)] == ["job-5", "job-3"]
    facets = db.jobs.facets()
    assert facets["tables"] == ["S.A", "S.B"] and facets["statuses"] == ["completed", "failed"]
    assert facets["triggers"] == ["api", "schedule"] and facets["users"] == ["ann"]
    assert facets["first_created"] == dt.datetime(2026, 3, 1, 12, tzinfo=dt.UTC)


def test_pruning_keeps_each_tables_last_job_and_last_success(db: MetadataDatabase) -> None:
    from sfduck_core.metadata.jobs import record_status

    _seed(db)
    reg_a = db.registrations.get("S", "A")
    with db.write() as conn:
        record_status(conn, reg_a, "job-2", "completed", dt.datetime(2026, 3, 3, tzinfo=dt.UTC))
    deleted = db.jobs.prune(dt.datetime(2026, 4, 1, tzinfo=dt.UTC))
    assert deleted == 5
    assert [j["sync_id"] for j in db.jobs.history()] == ["job-2"]


def test_daily_weekly_monthly_summaries_bucket_by_utc_date(db: MetadataDatabase) -> None:
    _seed(db)
    days = db.reports.daily_summary(JobQuery(), "day")
    assert [(r[0].isoformat(), r[1], r[2]) for r in days][:2] == [("2026-03-01", "failed", 1),
                                                                  ("2026-03-02", "completed", 1)]
    assert days[1][3:] == (1, 10, 0.5, 0.5)
    weeks = db.reports.daily_summary(JobQuery(), "week")  # 2026-03-01 is a Sunday: its week began 02-23
    assert [(r[0].isoformat(), r[1], r[2]) for r in weeks] == [
        ("2026-02-23", "failed", 1), ("2026-03-02", "completed", 4), ("2026-03-02", "failed", 1)]
    months = db.reports.daily_summary(JobQuery(tables=("S.A",)), "month")
    assert [(r[0].isoformat(), r[1], r[2], r[3]) for r in months] == [("2026-03-01", "completed", 2, 6),
                                                                     ("2026-03-01", "failed", 1, 0)]


def test_the_board_joins_registrations_statuses_and_last_ends(db: MetadataDatabase) -> None:
    _seed(db)
    reg_a = db.registrations.get("S", "A")
    db.jobs.fail(reg_a, "job-4", "broken", {})
    register(db, "NEW")
    rows = {r["table_name"]: r for r in db.reports.board()}
    assert rows["A"]["last_status"] == "failed" and rows["A"]["error_message"] == "broken"
    assert rows["B"]["last_status"] is None and rows["B"]["last_end"] == dt.datetime(2026, 3, 6, 12, 0, 5,
                                                                                    tzinfo=dt.UTC)
    assert rows["NEW"]["last_sync_id"] is None and rows["NEW"]["last_end"] is None
    facets = db.reports.history_facets()
    assert facets["tables"] == ["S.A", "S.B", "S.NEW"] and facets["users"] == ["ann"]


def test_schedule_rows_replace_update_delete(db: MetadataDatabase) -> None:
    reg = register(db)
    at = dt.datetime(2026, 5, 1, 6, tzinfo=dt.UTC)
    row = {"table_id": reg.table_id, "cron": "0 6 * * *", "timezone": "Europe/Paris", "interval_s": None,
           "strategy": "full", "enabled": True, "consecutive_failures": 0, "paused_reason": None,
           "next_run_at": at, "updated_by": "ann", "updated_at": at}
    db.schedules.replace(row)
    db.schedules.replace({**row, "cron": "0 7 * * *"})
    [found] = db.schedules.select()
    assert found["schema_name"] == "S" and found["cron"] == "0 7 * * *" and found["next_run_at"] == at
    db.schedules.update(reg.table_id, consecutive_failures=2, enabled=False)
    assert db.schedules.select(reg.table_id)[0]["consecutive_failures"] == 2
    with pytest.raises(ValueError):
        db.schedules.update(reg.table_id, nope=1)
    db.schedules.delete(reg.table_id)
    assert db.schedules.select() == []


def test_the_audit_log_and_the_source_claim(db: MetadataDatabase) -> None:
    assert db.registrations.claim_source("demo") is None
    reg = register(db)
    assert db.registrations.claim_source("acct") == "demo"  # registrations exist: no mixing
    db.registrations.audit("register", "ann", reg, {"at": dt.datetime(2026, 1, 1, tzinfo=dt.UTC)})
    db.registrations.audit("schedule.delete", None)
    log = db.registrations.audit_log()
    assert [e["action"] for e in log] == ["schedule.delete", "register"]
    assert log[1]["details"] == '{"at": "2026-01-01T00:00:00+00:00"}' and log[0]["details"] is None


def test_a_password_in_the_url_is_never_shown() -> None:
    assert redact_url("postgresql+psycopg://ann:s3cret@db.example/meta") == "postgresql+psycopg://ann:***@db.example/meta"
    with pytest.raises(SfduckError) as info:
        MetadataDatabase("mysql://ann:s3cret@db/meta")
    assert "s3cret" not in str(info.value)


def test_an_unreachable_postgresql_says_so_without_its_password() -> None:
    with pytest.raises(SfduckError, match="Could not open the metadata database") as info:
        MetadataDatabase("postgresql+psycopg://ann:s3cret@127.0.0.1:1/meta")
    assert "s3cret" not in str(info.value)


def test_the_default_sqlite_file_is_owner_only_and_in_wal_mode(tmp_path: Path) -> None:
    db = MetadataDatabase.beside(tmp_path)
    path = tmp_path / "sfduck-metadata.sqlite"
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    with db.read() as conn:
        assert conn.exec_driver_sql("PRAGMA journal_mode").scalar() == "wal"
        assert conn.exec_driver_sql("PRAGMA busy_timeout").scalar() > 0
