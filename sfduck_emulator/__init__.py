"""An embedded Snowflake emulator on loopback, for the zero-config demo and for tests.

`sfduck_core` never imports this package: the entry points (the command line, the dashboard, the
HTTP server) decide demo mode and hand the emulator's connection settings to the core. Importing
it changes nothing; `Emulator.start()` applies the fakesnow fixes (`fakesnow_fixes`). Modules:
`settings` (how to reach it, demo names), `server` (running one), `app` (the HTTP front),
`scanner` (recognising statements), `stages` + `unload` (COPY INTO @stage, GET, LIST, REMOVE),
`table_stats` (exact INFORMATION_SCHEMA figures), `demo_data` (the seed).

Why it exists: sfduck must be exercised end to end - the real `snowflake.connector` over HTTP,
`COPY INTO @stage` + `GET` as well as Arrow result batches - without a Snowflake account. fakesnow
0.12.1's server mode gets most of the way (DuckDB behind Snowflake's REST protocol); this package
wraps its Starlette app and adds what the sync engine needs and fakesnow lacks:

* login that refuses a wrong user/password the way Snowflake does (errno 390100);
* `COPY INTO @stage[/prefix] FROM (SELECT ...) | table FILE_FORMAT = (TYPE = PARQUET) ...`, writing
  snappy Parquet files named like Snowflake (`<prefix>_0_0_<n>.snappy.parquet`, `data_0_0_<n>...`
  when the prefix is empty or ends with `/`), split on MAX_FILE_SIZE (default 16 MB), no file for
  zero rows, columns `col1..colN` unless HEADER = TRUE, OVERWRITE = FALSE refusing existing files,
  and Snowflake's refusal to unload TIMESTAMP_TZ/LTZ to Parquet;
* `GET`, answered with the LOCAL_FS `DOWNLOAD` block so the real connector copies the files itself
  (a missing local dir gives the connector's 253005, a prefix matching nothing its 253006);
* `REMOVE`/`RM`, `DROP STAGE [IF EXISTS]`, `LIST` (fakesnow's cannot resolve quoted stage names
  and has no `@~`; the user stage `@~` exists for everyone);
  temporary stages are dropped when the session that created them logs out;
* `ALTER ACCOUNT SET/UNSET PREVENT_UNLOAD_TO_INTERNAL_STAGES` (unloads refused as Snowflake does),
  and the emulator's own `SFDUCK_DENY_CREATE_STAGE` (a role without CREATE STAGE: Snowflake's
  "Insufficient privileges" error) and `SFDUCK_UNLOAD_HTTP_STATUS` (an outage during unloads);
* statements fakesnow cannot run (an unhandled exception there, e.g. a NUMBER(38,0) literal beyond
  int64 or GEOMETRY) are answered with an error, not the HTTP 500 the connector retries for minutes;
* `ALTER SESSION SET/UNSET` of parameters fakesnow rejects (TIMEZONE, the unload type
  optimisation, ...) is accepted and ignored: the emulator always runs in UTC;
* NULL timestamps: fakesnow builds the epoch/fraction struct without a null mask, so NULL
  TIMESTAMP_NTZ/LTZ/TZ values reached clients as 1970-01-01. Starting an emulator patches
  `fakesnow.arrow.timestamp_to_sf_struct` (also honouring the Arrow time unit). TIME NULLs were fine.

One emulator per process is the intended use: fakesnow's server module keeps its sessions and its
shared in-memory DuckDB (`fakesnow.server.sessions`, `shared_fs`) in module globals. A second
`Emulator` in the same process works (own port, own user/password) but serves the SAME tables and
stages, and its seeding replaces the demo tables for everyone (e.g. a test's small "data" table
replaces the embedded emulator's million rows) - unless it is given its own `database`/`schema`,
which is how a test that must not disturb a shared emulator's demo tables seeds its own copy.

What fakesnow (and so the emulator) cannot hold or gets wrong - the sync engine must not rely on
the emulator for these:

* NUMBER(38,0) (and INT/BIGINT) is stored as BIGINT: values beyond int64 are impossible;
  NUMBER(p<38, 0) and NUMBER(p, s>0) are DuckDB DECIMALs and exact. No VECTOR, GEOGRAPHY,
  GEOMETRY, MAP.
* TIMESTAMP_NTZ(n) is stored with microseconds whatever n is (nanoseconds are lost), TIME too.
  TIMESTAMP_TZ and TIMESTAMP_LTZ both become TIMESTAMPTZ: the instant survives, the per-row
  offset does not; both are reported as TIMESTAMP_TZ.
* `DESC TABLE` reports: TIMESTAMP_NTZ(9) for every NTZ precision, TIMESTAMP_TZ(9) for LTZ and TZ,
  VARIANT for OBJECT and ARRAY, VARCHAR(16777216) for CHAR(n)/VARCHAR(n), BINARY(8388608), TIME(9),
  NUMBER(p,s) as declared, and 'N' in "primary key" (use SHOW PRIMARY KEYS).
  INFORMATION_SCHEMA.TABLES has the right ROW_COUNT but BYTES = 0; SHOW TABLES has rows = 0.
* TIMESTAMP_TZ literals need the offset glued to the time: '2024-01-01 10:00:00-08:00' works,
  '2024-01-01 10:00:00 -08:00' fails with "Unknown TimeZone '-08:00'" (DuckDB's parser).
* SUM over a NUMBER column comes back as FLOAT (fakesnow rewrites it to
  SUM(TRY_CAST(x AS DOUBLE))): do not checksum decimals with SUM through the emulator.
* Arrow results (`fetch_arrow_all` / `fetch_arrow_batches`; fakesnow sends ONE batch, whatever the
  size): NUMBER(38,0) int64 but NUMBER(p<38,0) decimal128(p,0); NUMBER(p, s>0) decimal128(p, s)
  even without `arrow_number_to_decimal` (real Snowflake sends scaled integers -> float64 by
  default); FLOAT double; VARCHAR string; BINARY binary; BOOLEAN bool; DATE date32; TIME
  time64[us]; TIMESTAMP_NTZ timestamp[ns] and TIMESTAMP_LTZ/TZ timestamp[ns, tz=Etc/UTC] - but
  timestamp[us] when a value of the batch lies outside 1677-2262 (the connector picks the unit
  from the data); VARIANT/OBJECT/ARRAY string (JSON text as inserted, not re-serialised). No
  result type failed in fetch_arrow_batches.
* Parquet written by COPY INTO: integers INT64, NUMBER(p,s>0) DECIMAL(p,s), FLOAT DOUBLE, dates
  DATE, TIME time64[us], TIMESTAMP_NTZ timestamp[us] (no time zone), VARIANT/OBJECT/ARRAY as
  UTF-8 JSON text, BINARY as BYTE_ARRAY. Every file of one unload has the same physical types (the
  real Snowflake varies them unless ENABLE_UNLOAD_PHYSICAL_TYPE_OPTIMIZATION = FALSE, and writes
  NUMBER(38,0) as DECIMAL(38,0)). Timestamps keep microseconds (the docs say Snowflake writes
  TIMESTAMP_NTZ(9) with milliseconds). `col1..colN` without HEADER follows the project notes and
  was not checked against a real account.
* Error codes the emulator invents because Snowflake does not document them: the TIMESTAMP_TZ
  unload refusal (100071) and "files already exist" (100090; not 100072, which the connector
  turns into IntegrityError).
* Temporary stages are visible to every session (fakesnow keeps one stage registry), and the
  session TIMEZONE is always UTC.
"""

from __future__ import annotations

from sfduck_core.config import SnowflakeSettings


class _EmbeddedDemo:
    """The `sfduck.demo_source` entry point (`embedded_snowflake`), through which the core finds the
    demo: called, the process-wide demo emulator's connection settings, started on first use;
    `change_orders(...)` makes its ORDERS table change (see `demo_data.change_orders`)."""

    def __call__(self) -> SnowflakeSettings:
        from sfduck_emulator.server import embedded_emulator

        return embedded_emulator().snowflake_settings()

    def change_orders(self, inserts: int, updates: int, deletes: int) -> dict[str, int]:
        from sfduck_emulator.demo_data import change_orders
        from sfduck_emulator.server import embedded_emulator

        embedded_emulator()  # the tables exist once the emulator is started (and seeded)
        return change_orders(inserts, updates, deletes)


embedded_snowflake = _EmbeddedDemo()
