"""The metadata database as the rest of sfduck uses it: its engine and one repository per
concern (registrations and the audit log, jobs and table statuses, schedules, reports)."""

from __future__ import annotations

import os

from sfduck_core.metadata.engine import MetadataEngine, default_metadata_url
from sfduck_core.metadata.jobs import Jobs
from sfduck_core.metadata.registrations import Registrations
from sfduck_core.metadata.reports import Reports
from sfduck_core.metadata.schedule_rows import ScheduleRows


class MetadataDatabase(MetadataEngine):
    """`MetadataDatabase(url)`; `.registrations`, `.jobs`, `.schedules`, `.reports`."""

    def __init__(self, url: str) -> None:
        super().__init__(url)
        self.registrations = Registrations(self)
        self.jobs = Jobs(self)
        self.schedules = ScheduleRows(self)
        self.reports = Reports(self)

    @classmethod
    def beside(cls, folder: str | os.PathLike[str]) -> MetadataDatabase:
        """The default database: a SQLite file in `folder`."""
        return cls(default_metadata_url(folder))
