"""Which lake snapshots a retention policy keeps, how it is configured, and when the server runs it."""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import pytest

from sfduck_core.config import load_settings
from sfduck_core.errors import ConfigError, SfduckError
from sfduck_core.retention import RetentionPolicy, policy_from, snapshots_to_expire
from sfduck_core.schedules import Chore, Scheduler
from sfduck_core.store import LakeSnapshot

NOW = dt.datetime(2026, 6, 1, 12, 0, tzinfo=dt.UTC)


def snap(snapshot_id: int, days_ago: float, table: str | None = None) -> LakeSnapshot:
    return LakeSnapshot(snapshot_id, NOW - dt.timedelta(days=days_ago), table)


# two tables synced in turn over 40 days, with bookkeeping commits (None) between their syncs
HISTORY = [snap(1, 40, None), snap(2, 39, "A"), snap(3, 30, "B"), snap(4, 29, None), snap(5, 20, "A"),
           snap(6, 10, "A"), snap(7, 9, "B"), snap(8, 3, None), snap(9, 2, "A"), snap(10, 1, None)]


@pytest.mark.parametrize(("policy", "expired"), [
    (RetentionPolicy(keep_versions=2, keep_days=None), [1, 2, 4, 5, 8]),  # A keeps 6, 9; B keeps 3, 7
    (RetentionPolicy(keep_versions=None, keep_days=7), [1, 2, 3, 4, 5, 6, 7]),
    (RetentionPolicy(keep_versions=1, keep_days=7), [1, 2, 3, 4, 5, 6]),  # B's last version (7) stays
    (RetentionPolicy(keep_versions=100, keep_days=100), []),
])
def test_a_snapshot_stays_when_either_rule_keeps_it(policy: RetentionPolicy, expired: list[int]) -> None:
    assert snapshots_to_expire(HISTORY, policy, NOW) == expired


def test_the_newest_snapshot_always_stays() -> None:
    only_bookkeeping = [snap(1, 50), snap(2, 40)]
    assert snapshots_to_expire(only_bookkeeping, RetentionPolicy(keep_versions=1, keep_days=None), NOW) == [1]
    assert snapshots_to_expire([], RetentionPolicy(), NOW) == []


@pytest.mark.parametrize(("versions", "days", "says"), [
    (None, None, "needs a number of versions"),
    (0, None, "at least one version"),
    (None, 0, "positive number of days"),
    (3, -1.5, "positive number of days"),
])
def test_a_policy_that_would_keep_nothing_is_refused(versions: int | None, days: float | None, says: str) -> None:
    with pytest.raises(SfduckError, match=says):
        RetentionPolicy(versions, days)


@pytest.fixture
def clean_env(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> pytest.MonkeyPatch:
    monkeypatch.chdir(tmp_path)
    for name in ("SFDUCK_LAKE_KEEP_VERSIONS", "SFDUCK_LAKE_KEEP_DAYS", "SFDUCK_LAKE_RETENTION_SCHEDULE"):
        monkeypatch.delenv(name, raising=False)
    return monkeypatch


def test_retention_settings_and_their_errors(clean_env: pytest.MonkeyPatch) -> None:
    settings = load_settings()
    assert (settings.lake_keep_versions, settings.lake_keep_days, settings.lake_retention_cron) == (
        10, 7.0, "30 3 * * *")
    assert policy_from(settings) == RetentionPolicy(10, 7.0)
    assert policy_from(settings, keep_versions=3) == RetentionPolicy(3, 7.0)  # the other rule stays
    clean_env.setenv("SFDUCK_LAKE_KEEP_DAYS", "off")
    clean_env.setenv("SFDUCK_LAKE_RETENTION_SCHEDULE", "0 */6 * * *")
    settings = load_settings()
    assert (settings.lake_keep_days, settings.lake_retention_cron) == (None, "0 */6 * * *")
    for name, value, says in [("SFDUCK_LAKE_KEEP_VERSIONS", "2.5", "whole number"),
                              ("SFDUCK_LAKE_KEEP_VERSIONS", "-3", "positive number"),
                              ("SFDUCK_LAKE_KEEP_VERSIONS", "off", "both off"),
                              ("SFDUCK_LAKE_RETENTION_SCHEDULE", "61 * * * *", "not a cron expression")]:
        with clean_env.context() as env:
            env.setenv(name, value)
            with pytest.raises(ConfigError, match=says):
                load_settings()
    clean_env.setenv("SFDUCK_LAKE_KEEP_VERSIONS", "off")
    clean_env.setenv("SFDUCK_LAKE_RETENTION_SCHEDULE", "off")  # keep everything: allowed
    assert load_settings().lake_retention_cron is None


class FakeSchedules:
    def list(self) -> list:
        return []


def test_a_chore_runs_at_its_due_times_and_a_failure_does_not_stop_the_next() -> None:
    moments = iter([NOW, NOW + dt.timedelta(hours=1), NOW + dt.timedelta(hours=15, minutes=30),
                    NOW + dt.timedelta(hours=16), NOW + dt.timedelta(days=1, hours=15, minutes=31)])
    runs: list[int] = []

    def action() -> None:
        runs.append(len(runs))
        if len(runs) == 1:
            raise RuntimeError("the first run fails")

    clock = lambda: next(moments)  # noqa: E731
    scheduler = Scheduler(FakeSchedules(), lambda request: None, clock=clock,  # type: ignore[arg-type]
                          chores=[Chore("retention", "30 3 * * *", action)])
    for _ in range(5):
        scheduler.tick()
    # started at 12:00 UTC: first due at 03:30 next day (15h30 later), then a day after
    assert runs == [0, 1]
