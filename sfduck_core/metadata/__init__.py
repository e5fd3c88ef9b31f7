"""sfduck's metadata database (registrations, jobs, table statuses, schedules, the audit log),
kept apart from the data: SQLAlchemy Core over SQLite (default) or PostgreSQL, Alembic migrations.

    db = MetadataDatabase(url)          # or MetadataDatabase.beside(folder): the default SQLite file
    db.registrations / db.jobs / db.schedules / db.reports
"""

from sfduck_core.metadata.database import MetadataDatabase
from sfduck_core.metadata.engine import METADATA_FILE, default_metadata_url, redact_url
from sfduck_core.metadata.records import JobQuery, Registration

__all__ = ["METADATA_FILE", "JobQuery", "MetadataDatabase", "Registration", "default_metadata_url", "redact_url"]
