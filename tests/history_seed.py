"""A long sync history in seconds: registered tables and `count` finished jobs spread over the
last `days` days, as schedules would leave them (mostly completed, some skipped, failed and
cancelled), for the browser test's ninety days and the server-scale bench's year.

Registrations go through the core (`Store.upsert_registration`); the jobs are inserted in one
statement, because the core only records jobs as they happen (stamped now), and a year of them
one by one would take hours.
"""

from __future__ import annotations

from pathlib import Path

from sfduck_core.store import META, Store

SEED_SCHEMA = "WORKSPACE_833213390"


def seed_history(db: Path, count: int, days: int, tables: int = 30, schema: str = SEED_SCHEMA) -> list[str]:
    """Returns the seeded table names (SEEDED_0 ...); each table's last job sets its board status."""
    store = Store(db)
    regs = [store.upsert_registration(schema, f"SEEDED_{i}", incremental_key=None, primary_key=(),
                                      detect_deletes=False, include_columns=(), exclude_columns=())
            for i in range(tables)]
    span_s = days * 86400
    with store.connect() as con:
        con.execute("CREATE TEMP TABLE seed_tables (k INTEGER, table_id VARCHAR, table_name VARCHAR)")
        con.executemany("INSERT INTO seed_tables VALUES (?, ?, ?)",
                        [[k, r.table_id, r.table_name] for k, r in enumerate(regs)])
        con.execute(f"""
            INSERT INTO {META}.sync_jobs (sync_id, table_id, schema_name, table_name, strategy, transport, status,
                created_at, started_at, completed_at, error_message, stats, trigger, started_by)
            SELECT uuid()::VARCHAR, t.table_id, ?, t.table_name, 'incremental', 'stage',
                   CASE WHEN i % 50 = 3 THEN 'failed' WHEN i % 97 = 5 THEN 'cancelled'
                        WHEN i % 7 = 1 THEN 'skipped' ELSE 'completed' END,
                   now() - to_seconds(60 + i * ? // ?), now() - to_seconds(60 + i * ? // ?),
                   now() - to_seconds(60 + i * ? // ?) + to_seconds(5 + i % 40),
                   CASE WHEN i % 50 = 3 THEN 'Snowflake said: warehouse SEED_WH is suspended.'
                        WHEN i % 97 = 5 THEN 'Cancelled by admin.' END,
                   CASE WHEN i % 7 = 1 AND i % 50 <> 3 AND i % 97 <> 5
                        THEN json_object('skipped', true, 'rows_processed', 0, 'duration_s', 0.4)
                        ELSE json_object('rows_processed', (i * 7919) % 100000, 'duration_s', 5 + (i % 40),
                                         'bytes_transferred', ((i * 7919) % 100000) * 180,
                                         'unload_s', 2 + (i % 10), 'download_s', 1 + (i % 5),
                                         'load_s', 1 + (i % 7)) END,
                   CASE WHEN i % 3 = 0 THEN 'api' ELSE 'schedule' END, 'scheduler'
            FROM range(?) r(i) JOIN seed_tables t ON t.k = i % ?""",
                    [schema, span_s, count, span_s, count, span_s, count, count, tables])
        con.execute(f"""
            INSERT INTO {META}.table_sync_status (table_id, schema_name, table_name, last_sync_id, last_status,
                last_sync_at, last_success_sync_id, last_success_at, row_count)
            SELECT table_id, schema_name, table_name, arg_max(sync_id, created_at), arg_max(status, created_at),
                   max(completed_at), arg_max(sync_id, created_at) FILTER (WHERE status = 'completed'),
                   max(completed_at) FILTER (WHERE status = 'completed'), 100000 + hash(table_id) % 900000
            FROM {META}.sync_jobs WHERE table_id IN (SELECT table_id FROM seed_tables) GROUP BY ALL""")
    return [r.table_name for r in regs]
