"""Users file, demo users, the demo-credentials refusal, equal work for unknown users and login throttling."""

from __future__ import annotations

import stat
from pathlib import Path

import pytest
import yaml

from sfduck_core.authdb import AuthDatabase
from sfduck_core.errors import ConfigError
from sfduck_core.users import (
    LoginThrottle,
    check_password,
    hash_password,
    load_users,
)
from tests.unit.conftest import FakeClock


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


def test_users_file_path_from_settings(tmp_path: Path) -> None:
    from sfduck_core.config import load_settings

    explicit = load_settings(env={"SFDUCK_USERS_FILE": "/etc/sfduck/users.yaml"}, dotenv_path=tmp_path / ".env",
                             secrets_path=tmp_path / "s.toml")
    assert explicit.users_file == Path("/etc/sfduck/users.yaml")
    default = load_settings(env={}, dotenv_path=tmp_path / ".env", secrets_path=tmp_path / "s.toml")
    assert default.users_file.is_absolute() and default.users_file.name == "users.yaml"


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
    root = Path(__file__).resolve().parents[2]
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


@pytest.fixture
def throttle(tmp_path: Path, clock: FakeClock) -> LoginThrottle:
    return LoginThrottle(AuthDatabase(tmp_path / "auth.sqlite", clock=clock), base_delay_s=60, max_delay_s=600,
                         window_s=3600)


def test_throttle_slows_a_user_down_after_five_failures_and_lets_them_try_later(
        throttle: LoginThrottle, clock: FakeClock) -> None:
    for _ in range(4):
        throttle.record_failure("Admin", "10.0.0.1")
        clock.now += 10
    assert throttle.refusal_message("admin", "10.0.0.1") is None
    throttle.record_failure("admin ", "10.0.0.1")
    message = throttle.refusal_message("admin", "10.0.0.1")
    assert message and "Too many failed logins" in message and "1 min" in message
    assert throttle.refusal_message("analyst", "10.0.0.1") is None  # per user
    assert throttle.refusal_message("admin", "10.0.0.2") is None  # a stranger cannot lock a user out
    clock.now += 59
    assert throttle.seconds_to_wait("admin", "10.0.0.1") == pytest.approx(1)
    clock.now += 2
    assert throttle.refusal_message("admin", "10.0.0.1") is None


def test_throttle_backs_off_exponentially_up_to_a_cap(throttle: LoginThrottle, clock: FakeClock) -> None:
    waits = []
    for _ in range(10):
        throttle.record_failure("u", "a")
        waits.append(round(throttle.seconds_to_wait("u", "a")))
        clock.now += throttle.seconds_to_wait("u", "a")  # the attacker waits each delay out
    assert waits == [0, 0, 0, 0, 60, 120, 240, 480, 600, 600]


def test_throttle_counts_per_address_across_usernames(throttle: LoginThrottle) -> None:
    for i in range(20):
        throttle.record_failure(f"user{i}", "203.0.113.9")
    assert throttle.refusal_message("someone-new", "203.0.113.9")  # spraying usernames is slowed too
    assert throttle.refusal_message("someone-new", "198.51.100.1") is None


def test_throttle_is_shared_by_processes_and_survives_restarts(tmp_path: Path, clock: FakeClock) -> None:
    first = LoginThrottle(AuthDatabase(tmp_path / "auth.sqlite", clock=clock))
    for _ in range(5):
        first.record_failure("admin", "a")
    restarted = LoginThrottle(AuthDatabase(tmp_path / "auth.sqlite", clock=clock))
    assert restarted.refusal_message("admin", "a")


def test_throttle_forgets_failures_outside_the_window(throttle: LoginThrottle, clock: FakeClock) -> None:
    for _ in range(4):
        throttle.record_failure("u", "a")
    clock.now += 3601
    throttle.record_failure("u", "a")
    assert throttle.seconds_to_wait("u", "a") == 0


def test_success_resets_the_users_count(throttle: LoginThrottle) -> None:
    for _ in range(4):
        throttle.record_failure("u", "a")
    throttle.record_success("u", "a")
    for _ in range(4):
        throttle.record_failure("u", "a")
    assert throttle.seconds_to_wait("u", "a") == 0
    throttle.record_failure("u", "a")
    assert throttle.seconds_to_wait("u", "a") > 0


def test_auth_database_is_owner_only(tmp_path: Path) -> None:
    AuthDatabase(tmp_path / "auth.sqlite")
    assert stat.S_IMODE((tmp_path / "auth.sqlite").stat().st_mode) == 0o600


def test_unknown_users_cost_as_much_as_real_ones(tmp_path: Path) -> None:
    """No timing oracle: an unknown name is checked against a decoy of the real users' bcrypt cost
    (bcrypt's time is set by its cost; the ratio was 75-138 ms against 350-495 ms before)."""
    import bcrypt

    path = write_users(tmp_path / "users.yaml", {"jdoe": {"password": hash_password("pw-1234", rounds=11),
                                                         "roles": ["admin"]}})
    users = load_users(demo=False, path=path)
    decoy = users.hash_to_check("nobody")
    assert decoy != users.hash_to_check("jdoe")
    assert decoy.split("$")[2] == users.hash_to_check("jdoe").split("$")[2] == "11"
    assert not bcrypt.checkpw(b"x", decoy.encode()) and not users.verify("nobody", "x")
    assert users.verify("JDoe", "pw-1234")


def test_real_users_are_never_shadowed_by_demo_users(tmp_path: Path, strong_hash: str) -> None:
    path = write_users(tmp_path / "users.yaml", {"admin": {"password": strong_hash, "roles": ["admin"]}})
    users = load_users(demo=True, path=path)
    assert users.verify("admin", "correct horse battery")
    assert not users.verify("admin", "admin")


def test_a_users_file_others_can_change_is_refused(tmp_path: Path, strong_hash: str) -> None:
    """Issue 9 item 12: whoever can write the users file can make themselves admin."""
    path = write_users(tmp_path / "users.yaml", {"jdoe": {"password": strong_hash, "roles": ["admin"]}})
    path.chmod(0o666)
    with pytest.raises(ConfigError, match="can be changed by other users.*chmod 600"):
        load_users(demo=False, path=path)
    path.chmod(0o600)
    assert load_users(demo=False, path=path).roles_of("jdoe") == ["admin"]
