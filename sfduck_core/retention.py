"""How long a lake keeps earlier versions of the synced tables.

Every commit to a DuckLake is a snapshot, and every snapshot stays readable (Preview "as of", a
restore) until it is expired; its files stay on disk as long as any snapshot uses them. A team
wants "the last K versions of each table, and everything from the last N days", so a snapshot is
kept when either rule protects it: it is one of the last K sync versions of its table, or it is
younger than N days. sfduck's bookkeeping commits (job rows, registrations) are no table's
version and only the day rule keeps them. The newest snapshot is always kept (it is the present).
Expiring and deleting files is DuckLake's own work (`Store.expire_lake_snapshots`).
"""

from __future__ import annotations

import datetime as dt
from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from sfduck_core.config import Settings
from sfduck_core.errors import SfduckError
from sfduck_core.store import LakeSnapshot, Store, now


@dataclass(frozen=True)
class RetentionPolicy:
    keep_versions: int | None = 10  # the last K sync versions of each table
    keep_days: float | None = 7.0  # every snapshot younger than this

    def __post_init__(self) -> None:
        if self.keep_versions is None and self.keep_days is None:
            raise SfduckError("A retention policy needs a number of versions to keep, a number of days, or both.")
        if self.keep_versions is not None and self.keep_versions < 1:
            raise SfduckError(f"Keep at least one version of each table, not {self.keep_versions}.")
        if self.keep_days is not None and not self.keep_days > 0:
            raise SfduckError(f"Keep snapshots for a positive number of days, not {self.keep_days}.")

    def describe(self) -> str:
        rules = []
        if self.keep_versions is not None:
            rules.append(f"the last {self.keep_versions} version(s) of each table")
        if self.keep_days is not None:
            rules.append(f"every snapshot of the last {self.keep_days:g} day(s)")
        return "keeps " + " and ".join(rules)


def policy_from(settings: Settings, keep_versions: int | None = None, keep_days: float | None = None
                ) -> RetentionPolicy:
    """The configured policy (SFDUCK_LAKE_KEEP_VERSIONS, SFDUCK_LAKE_KEEP_DAYS), or the one given
    for a run on demand: a rule given replaces the configured one, the other is kept."""
    return RetentionPolicy(settings.lake_keep_versions if keep_versions is None else keep_versions,
                           settings.lake_keep_days if keep_days is None else keep_days)


def snapshots_to_expire(snapshots: Sequence[LakeSnapshot], policy: RetentionPolicy,
                        moment: dt.datetime) -> list[int]:
    """The ids no rule protects, oldest first."""
    if not snapshots:
        return []
    protected = {max(s.snapshot_id for s in snapshots)}
    if policy.keep_days is not None:
        cutoff = moment - dt.timedelta(days=policy.keep_days)
        protected.update(s.snapshot_id for s in snapshots if s.snapshot_time >= cutoff)
    if policy.keep_versions is not None:
        versions: dict[str, list[int]] = defaultdict(list)
        for s in snapshots:
            if s.table_id is not None:
                versions[s.table_id].append(s.snapshot_id)
        for ids in versions.values():
            protected.update(sorted(ids)[-policy.keep_versions:])
    return sorted(s.snapshot_id for s in snapshots if s.snapshot_id not in protected)


def apply_retention(store: Store, policy: RetentionPolicy, *, actor: str | None = None, dry_run: bool = False,
                    moment: dt.datetime | None = None) -> dict[str, Any]:
    """Expire what the policy no longer protects and delete the files nothing references any more.
    The outcome is recorded in the audit log (who, when, how much), a dry run changes nothing."""
    snapshots = store.lake_snapshots()
    expire = snapshots_to_expire(snapshots, policy, moment or now())
    outcome: dict[str, Any] = {"policy": policy.describe(), "snapshots": len(snapshots),
                               "snapshots_to_expire": expire, "dry_run": dry_run}
    if dry_run:
        return outcome
    outcome.update(store.expire_lake_snapshots(expire))
    store.audit("lake_retention", actor, details={k: v for k, v in outcome.items() if k != "snapshots_to_expire"})
    return outcome
