"""The API's request and response bodies: what the OpenAPI document promises, field by field.

Request bodies refuse unknown fields, so a typo (`incremental-key`) is a 422 naming it instead of
a silently ignored option.
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

Strategy = Literal["full", "incremental"]
# sfduck_core.job_status.JOB_STATUSES, spelled out for the OpenAPI schema (a test keeps them equal)
JobStatus = Literal["pending", "waiting", "running", "completed", "skipped", "failed", "cancelled"]
JOB_STATUS_HELP = ("pending, waiting or running: not finished (waiting: for the DuckDB file another process "
                   "holds, named in error_message); completed: the changes were copied; skipped: nothing had "
                   "changed since the last successful sync, so nothing was copied and the copy is still current; "
                   "failed or cancelled: the table was left as it was before the sync")
Transport = Literal["auto", "stage", "arrow"]
Name = Field(min_length=1, max_length=255)


class Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class ErrorOut(BaseModel):
    detail: str = Field(description="what went wrong and, when you can fix it, how (in the API's terms)")
    remedy: str | None = Field(default=None, description="the fix, as a key: register, incremental_key, ...")
    message: str | None = Field(default=None, description="what went wrong, without the fix")
    facts: dict[str, str] | None = Field(default=None, description="the names the fix needs (schema, table)")


class TokenOut(BaseModel):
    access_token: str
    token_type: Literal["bearer"] = "bearer"
    expires_in: int


class TableOut(BaseModel):
    table_name: str
    row_count: int | None
    size_bytes: int | None
    last_modified: str | None
    table_type: str | None = None
    registered: bool = Field(default=False, description="whether sfduck syncs it (an active registration)")
    table_id: str | None = Field(default=None, description="its id when registered (for /sync/tables/status/...)")


class ColumnOut(BaseModel):
    name: str
    snowflake_type: str
    duckdb_type: str
    nullable: bool


class DescriptionOut(BaseModel):
    schema_name: str
    table_name: str
    primary_key: list[str]
    columns: list[ColumnOut]


class RegisterIn(Strict):
    table_name: str = Name
    schema_name: str = Name
    incremental_key: str | None = Field(default=None, min_length=1, max_length=255)
    primary_key: list[str] | None = Field(default=None, max_length=64)
    detect_deletes: bool = False
    include_columns: list[str] = Field(default_factory=list, max_length=4096)
    exclude_columns: list[str] = Field(default_factory=list, max_length=4096)


class RegistrationOut(BaseModel):
    table_id: str
    table_name: str
    schema_name: str
    status: Literal["active", "inactive"]
    incremental_key: str | None = None
    primary_key: list[str] = []
    detect_deletes: bool = False
    include_columns: list[str] = []
    exclude_columns: list[str] = []
    full_sync_required: bool = False


class StartIn(Strict):
    table_name: str = Name
    schema_name: str = Name
    strategy: Strategy = "full"
    incremental_key: str | None = Field(default=None, min_length=1, max_length=255)
    primary_key: list[str] | None = Field(default=None, max_length=64)
    where: str | None = Field(default=None, max_length=10_000)
    transport: Transport = "auto"
    detect_deletes: bool | None = None
    force: bool = False
    trigger: Literal["api", "cli"] = Field(default="api", description="cli: the sfduck command with --server")


class LastSyncOut(BaseModel):
    sync_id: str | None
    status: str | None
    at: str | None
    last_success_sync_id: str | None
    last_success_at: str | None
    row_count: int | None


class RegisteredTableOut(RegistrationOut):
    schedule: str | None = Field(description="when its schedule runs it (None: no schedule)")
    schedule_enabled: bool | None = None
    last_sync: LastSyncOut | None = Field(description="its latest sync (None: never synced)")


class StartOut(BaseModel):
    sync_id: str
    status: JobStatus = Field(description=JOB_STATUS_HELP)


class StartAllIn(Strict):
    strategy: Strategy = "full"


class StartAllItem(BaseModel):
    schema_name: str
    table_name: str
    started: bool
    sync_id: str | None = None
    reason: str | None = None


class ProgressOut(BaseModel):
    phase: str
    message: str
    rows_done: int
    rows_total: int | None
    files_done: int
    files_total: int
    bytes_done: int
    fraction: float | None


class JobOut(BaseModel):
    sync_id: str
    table_id: str
    schema_name: str
    table_name: str
    strategy: str
    transport: str
    status: JobStatus = Field(description=JOB_STATUS_HELP)
    created_at: str | None
    started_at: str | None
    completed_at: str | None
    error_message: str | None
    stats: dict[str, Any]
    filter: str | None
    trigger: str | None
    started_by: str | None
    progress: ProgressOut | None = None


class JobPage(BaseModel):
    jobs: list[JobOut]
    total: int
    limit: int
    offset: int


class TableStatusOut(BaseModel):
    registration: RegistrationOut
    sync_status: dict[str, Any] | None
    jobs: list[JobOut]
    total: int
    limit: int
    offset: int


class CheckOut(BaseModel):
    ok: bool
    detail: str


class HealthOut(BaseModel):
    status: Literal["ok", "degraded"]
    duckdb: CheckOut
    snowflake: CheckOut


class ScheduleIn(Strict):
    cron: str | None = Field(default=None, max_length=200, description="five-field cron expression")
    timezone: str = Field(default="UTC", max_length=64, description="IANA time zone of the cron expression")
    interval_s: int | None = Field(default=None, ge=60, le=366 * 86400, description="or a fixed interval")
    strategy: Strategy = "full"
    enabled: bool = True


class ScheduleOut(BaseModel):
    table_id: str
    schema_name: str
    table_name: str
    strategy: str
    enabled: bool
    cron: str | None
    timezone: str
    interval_s: int | None
    consecutive_failures: int
    paused_reason: str | None
    next_run_at: str | None
    last_run_at: str | None
    last_sync_id: str | None
    last_outcome: str | None
    updated_by: str | None
    updated_at: str | None
    when: str


class RestoreIn(Strict):
    table_name: str = Name
    schema_name: str = Name
    sync_id: str = Field(min_length=1, max_length=64, description="the earlier sync whose version comes back")
    trigger: Literal["api", "cli"] = Field(default="api", description="cli: the sfduck command with --server")


class RetentionIn(Strict):
    keep_versions: int | None = Field(default=None, ge=1, le=1_000_000,
                                      description="the last K versions of each table (default: the server's)")
    keep_days: float | None = Field(default=None, gt=0, le=100_000,
                                    description="every snapshot of the last N days (default: the server's)")
    dry_run: bool = False


class RetentionOut(BaseModel):
    policy: str
    snapshots: int
    snapshots_to_expire: list[int]
    dry_run: bool
    snapshots_expired: int | None = None
    files_deleted: int | None = None
    orphans_deleted: int | None = None
