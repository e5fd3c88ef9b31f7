"""Users file, demo users, the demo-credentials refusal, the cookie key and login throttling."""

from __future__ import annotations

import stat
from pathlib import Path

import pytest
import yaml

from sfduck_core.errors import ConfigError
from sfduck_core.users import (
    COOKIE_KEY_FILE,
    LoginThrottle,
    check_password,
    hash_password,
    load_users,
    resolve_cookie_key,
    users_file_path,
)


def write_users(path: Path, users: dict) -> Path:
    path.write_text(yaml.safe_dump({"usernames": users}), encoding="utf-8")
    return path


@pytest.fixture(scope="module")
def strong_hash() -> str:
    return hash_password("correct horse battery", rounds=4)


def test_hash_round_trip_and_malformed_hash() -> None:
    hashed = hash_password("s3cret", rounds=4)
    assert hashed.startswith("$2b$")
    assert check_password("s3cret", hashed)
    assert not check_password("S3cret", hashed)
    assert not check_password("s3cret", "not-a-hash")


def test_users_file_path_from_env() -> None:
    assert users_file_path({}) == Path("users.yaml")
    assert users_file_path({"SFDUCK_USERS_FILE": "/etc/sfduck/users.yaml"}) == Path("/etc/sfduck/users.yaml")


def test_demo_mode_has_demo_users_without_a_file(tmp_path: Path) -> None:
    users = load_users(demo=True, path=tmp_path / "missing.yaml")
    assert users.demo
    assert users.roles_of("admin") == ["admin"]
    assert users.roles_of("analyst") == ["analyst"]
    assert users.verify("admin", "admin")
    assert users.verify("Analyst ", "analyst")  # usernames are case- and space-insensitive
    assert not users.verify("admin", "analyst")
    assert not users.verify("nobody", "admin")


def test_demo_hashes_are_made_at_runtime_not_committed() -> None:
    root = Path(__file__).resolve().parents[1]
    users_module = (root / "sfduck_core" / "users.py").read_text()
    example = (root / "users.example.yaml").read_text()
    assert "$2b$1" not in users_module.replace("$2b$...", "")
    for entry in yaml.safe_load(example)["usernames"].values():
        assert not check_password("admin", entry["password"]) and "REPLACE" in entry["password"]


def test_file_users_load_with_roles(tmp_path: Path, strong_hash: str) -> None:
    path = write_users(tmp_path / "users.yaml", {
        "JDoe": {"password": strong_hash, "roles": ["admin"], "email": "j@example.com"},
        "rsmith": {"password": strong_hash, "roles": "analyst"},
    })
    users = load_users(demo=False, path=path)
    assert not users.demo
    assert users.roles_of("jdoe") == ["admin"]
    assert users.roles_of("rsmith") == ["analyst"]
    assert users.verify("jdoe", "correct horse battery")
    assert "admin" not in users.users  # no demo users outside demo mode
    creds = users.credentials()
    creds["usernames"]["jdoe"]["roles"].append("mutated")
    assert users.roles_of("jdoe") == ["admin"]  # the library gets a copy it may mutate


def test_missing_file_outside_demo_mode_is_refused(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="No users file"):
        load_users(demo=False, path=tmp_path / "users.yaml")


@pytest.mark.parametrize("user, password", [("admin", "admin"), ("analyst", "analyst")])
def test_demo_credentials_refused_outside_demo_mode(tmp_path: Path, user: str, password: str,
                                                    strong_hash: str) -> None:
    path = write_users(tmp_path / "users.yaml", {
        user: {"password": hash_password(password, rounds=4), "roles": ["admin"]},
        "other": {"password": strong_hash, "roles": ["analyst"]},
    })
    with pytest.raises(ConfigError, match=f"demo password for {user}"):
        load_users(demo=False, path=path)
    # The same file is fine in demo mode, where these logins are advertised anyway.
    assert load_users(demo=True, path=path).verify(user, password)


def test_admin_with_a_real_password_is_accepted(tmp_path: Path, strong_hash: str) -> None:
    path = write_users(tmp_path / "users.yaml", {"admin": {"password": strong_hash, "roles": ["admin"]}})
    assert load_users(demo=False, path=path).verify("admin", "correct horse battery")


@pytest.mark.parametrize("entry, message", [
    ({"password": "plaintext", "roles": ["admin"]}, "no bcrypt password hash"),
    ({"password": "$2b$04$abcdefghijklmnopqrstuv", "roles": ["owner"]}, "unknown: owner"),
    ({"password": "$2b$04$abcdefghijklmnopqrstuv"}, "needs `roles:`"),
])
def test_bad_user_entries_are_explained(tmp_path: Path, entry: dict, message: str) -> None:
    path = write_users(tmp_path / "users.yaml", {"x": entry})
    with pytest.raises(ConfigError, match=message):
        load_users(demo=False, path=path)


def test_not_a_mapping_is_explained(tmp_path: Path) -> None:
    path = tmp_path / "users.yaml"
    path.write_text("- just\n- a list\n")
    with pytest.raises(ConfigError, match="usernames"):
        load_users(demo=True, path=path)


def test_cookie_key_generated_once_with_owner_only_mode(tmp_path: Path) -> None:
    db = tmp_path / "data" / "sfduck.duckdb"
    key = resolve_cookie_key(None, db)
    key_file = db.parent / COOKIE_KEY_FILE
    assert len(key) >= 32
    assert stat.S_IMODE(key_file.stat().st_mode) == 0o600
    assert resolve_cookie_key(None, db) == key  # stable across restarts
    assert resolve_cookie_key("x" * 40, db) == "x" * 40  # secrets win


def test_short_configured_cookie_key_is_refused(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="too short"):
        resolve_cookie_key("short", tmp_path / "db.duckdb")


class FakeClock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def test_throttle_locks_after_five_failures_in_window_and_unlocks_later() -> None:
    clock = FakeClock()
    throttle = LoginThrottle(max_failures=5, window_s=300, lockout_s=120, clock=clock)
    for _ in range(4):
        throttle.record_failure("Admin")
        clock.now += 10
    assert throttle.refusal_message("admin") is None
    throttle.record_failure("admin ")
    message = throttle.refusal_message("admin")
    assert message and "Too many failed logins" in message and "2 min" in message
    assert throttle.refusal_message("analyst") is None  # per user
    clock.now += 119
    assert throttle.seconds_locked("admin") == pytest.approx(1)
    clock.now += 2
    assert throttle.refusal_message("admin") is None


def test_throttle_forgets_failures_outside_the_window() -> None:
    clock = FakeClock()
    throttle = LoginThrottle(max_failures=3, window_s=60, lockout_s=60, clock=clock)
    throttle.record_failure("u")
    throttle.record_failure("u")
    clock.now += 61
    throttle.record_failure("u")
    assert throttle.seconds_locked("u") == 0


def test_success_resets_the_count() -> None:
    clock = FakeClock()
    throttle = LoginThrottle(max_failures=2, clock=clock)
    throttle.record_failure("u")
    throttle.record_success("u")
    throttle.record_failure("u")
    assert throttle.seconds_locked("u") == 0
    throttle.record_failure("u")
    assert throttle.seconds_locked("u") > 0
