"""Session tokens behind the re-login cookie: strong keys only, expiry, revocation, password changes."""

from __future__ import annotations

import stat
from pathlib import Path

import jwt
import pytest

from sfduck_core.authdb import AuthDatabase
from sfduck_core.errors import ConfigError
from sfduck_core.sessions import SESSION_KEY_FILE, SessionTokens, check_key_strength, resolve_session_key
from tests.unit.conftest import FakeClock

STRONG_KEY = "Jv3Qm8x1ZpL0sT7wYb2Nc5Rd9Kf4Hg6UaEoXiWqPzMl"
EXAMPLE_FILE = Path(__file__).resolve().parents[2] / ".streamlit" / "secrets.toml.example"


@pytest.fixture
def tokens(tmp_path: Path, clock: FakeClock) -> SessionTokens:
    return SessionTokens(STRONG_KEY, AuthDatabase(tmp_path / "auth.sqlite", clock=clock), 3600, clock=clock)


HASHES = {"admin": "$2b$12$firsthashfirsthashfirsthashfirsthashfirsthashfirstha"}


def test_a_fresh_token_proves_its_user(tokens: SessionTokens) -> None:
    token, session = tokens.issue("admin", HASHES["admin"])
    assert tokens.verify(token, HASHES.get) == session


def test_the_example_files_placeholder_key_is_refused() -> None:
    placeholder = next(line.split('"')[1] for line in EXAMPLE_FILE.read_text().splitlines()
                       if line.lstrip("# ").startswith("cookie_key ="))
    with pytest.raises(ConfigError, match=r"\[sfduck\] cookie_key looks like a placeholder"):
        resolve_session_key(placeholder, Path("/nonexistent"))


@pytest.mark.parametrize("key, reason", [
    ("short", "too short"),
    ("x" * 64, "placeholder|too predictable"),
    ("Ab1" * 12, "too predictable"),
    ("abababababababababababababababababababab", "too predictable"),
    ("0123456789012345678901234567890123", "too predictable"),
    ("my-secret-key-for-the-sfduck-dashboard-2026", "placeholder"),
])
def test_weak_keys_are_refused(key: str, reason: str) -> None:
    with pytest.raises(ConfigError, match=reason):
        check_key_strength(key, "[sfduck] cookie_key")


@pytest.mark.parametrize("key", [
    "abcdefghijklmnopqrstuvwxyz012345",  # every character distinct, but a run anyone would try
    "MyCompanySfduckKey2026Production",  # words, mixed case
    "mycompanysfduckkeyproduction2026x",  # words, one case
    "correct-horse-battery-staple-sfduck-2026",
    "Zm9vYmFy!Zm9vYmFy?Zm9vYmFyQmF6cXV4",  # not what a generator prints
    "31415926535897932384626433832795",  # digits only (of pi): a guess, not 128 bits
])
def test_keys_that_passed_the_old_check_but_are_guessable_are_refused(key: str) -> None:
    """Issue 18 item 7: a key must carry 128 random bits, judged by the form generators print."""
    with pytest.raises(ConfigError, match="too predictable") as refused:
        check_key_strength(key, "[sfduck] cookie_key")
    assert "secrets.token_urlsafe(48)" in str(refused.value)


def test_ordinary_generated_keys_pass() -> None:
    import base64
    import os
    import secrets

    for _ in range(200):
        check_key_strength(secrets.token_hex(16), "hex")  # 32 hex digits: exactly 128 bits
        check_key_strength(secrets.token_hex(32).upper(), "HEX")
        check_key_strength(secrets.token_urlsafe(48), "urlsafe")
        check_key_strength(base64.b64encode(os.urandom(48)).decode(), "openssl rand -base64 48")


def test_a_generated_key_is_strong_stable_and_owner_only(tmp_path: Path) -> None:
    key = resolve_session_key(None, tmp_path)
    assert check_key_strength(key, "generated") == key
    assert stat.S_IMODE((tmp_path / SESSION_KEY_FILE).stat().st_mode) == 0o600
    assert resolve_session_key(None, tmp_path) == key  # survives restarts
    assert resolve_session_key(STRONG_KEY, tmp_path) == STRONG_KEY  # a configured key wins


def test_a_token_signed_with_another_key_is_refused(tokens: SessionTokens, clock: FakeClock) -> None:
    forged = jwt.encode({"sub": "admin", "sid": "x", "exp": clock.now + 60,
                         "pwd": "0" * 32}, "replace-me-with-at-least-32-random-characters", algorithm="HS256")
    assert tokens.verify(forged, HASHES.get) is None
    assert tokens.verify("not a token", HASHES.get) is None
    assert tokens.verify(None, HASHES.get) is None


def test_tokens_expire(tokens: SessionTokens, clock: FakeClock) -> None:
    token, session = tokens.issue("admin", HASHES["admin"])
    clock.now += 3599
    assert tokens.verify(token, HASHES.get) == session
    clock.now += 2
    assert tokens.verify(token, HASHES.get) is None
    assert not tokens.is_valid(session, HASHES.get)


@pytest.mark.parametrize("exp", [float("nan"), float("inf"), float("-inf"), "NaN", "Infinity", None, [1],
                                 1e308, 10**30, "9999999999", True])
def test_a_token_whose_expiry_is_not_a_finite_number_is_refused(tokens: SessionTokens, exp: object) -> None:
    """Issue 18 item 8: NaN compared as 'not expired' for ever (forging it needs the key; refuse it anyway)."""
    _, session = tokens.issue("admin", HASHES["admin"])
    claims = {"sub": "admin", "sid": session.session_id, "exp": exp, "pwd": session.password_fingerprint}
    forged = jwt.encode(claims, STRONG_KEY, algorithm="HS256")
    assert tokens.verify(forged, HASHES.get) is None


def test_a_token_may_not_outlive_a_session(tokens: SessionTokens, clock: FakeClock) -> None:
    """A finite expiry centuries away never expires either: no further than a session lasts (3600 s here)."""
    _, session = tokens.issue("admin", HASHES["admin"])
    claims = {"sub": "admin", "sid": session.session_id, "pwd": session.password_fingerprint}
    within = jwt.encode({**claims, "exp": clock.now + 3600}, STRONG_KEY, algorithm="HS256")
    assert tokens.verify(within, HASHES.get) is not None
    beyond = jwt.encode({**claims, "exp": clock.now + 3600 + 3600}, STRONG_KEY, algorithm="HS256")
    assert tokens.verify(beyond, HASHES.get) is None


def test_logout_revokes_the_token_for_every_process(tokens: SessionTokens, tmp_path: Path,
                                                    clock: FakeClock) -> None:
    token, session = tokens.issue("admin", HASHES["admin"])
    other_process = SessionTokens(STRONG_KEY, AuthDatabase(tmp_path / "auth.sqlite", clock=clock), 3600,
                                  clock=clock)
    tokens.revoke(session)
    assert tokens.verify(token, HASHES.get) is None
    assert other_process.verify(token, HASHES.get) is None
    assert not other_process.is_valid(session, HASHES.get)


def test_a_password_change_or_a_removed_user_ends_the_session(tokens: SessionTokens) -> None:
    token, session = tokens.issue("admin", HASHES["admin"])
    changed = {"admin": "$2b$12$secondhashsecondhashsecondhashsecondhashsecondhashse"}
    assert tokens.verify(token, changed.get) is None
    assert not tokens.is_valid(session, changed.get)
    assert tokens.verify(token, {}.get) is None


def test_a_generated_key_that_happens_to_spell_a_placeholder_word_passes() -> None:
    """`token_urlsafe(48)` printed 'F0M1Vwe4nL8vhp1YkjPXB0Tu0GUEh0Sn6qZ9Rh6xXXxgoNvrCOSIsya3mGtskRGz' in a CI
    run: 'xXXx' is not a placeholder when the rest of the key carries the bits; a typed one still is."""
    key = "F0M1Vwe4nL8vhp1YkjPXB0Tu0GUEh0Sn6qZ9Rh6xXXxgoNvrCOSIsya3mGtskRGz"
    assert check_key_strength(key, "urlsafe") == key
    assert check_key_strength(key[:20] + "PaStE" + key[20:], "urlsafe")
    for typed in ("replace-me-with-at-least-32-random-characters", "xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx",
                  "paste-the-generated-key-here-" + "Ab3dE9", "changeme" * 6):
        with pytest.raises(ConfigError, match="placeholder"):
            check_key_strength(typed, "k")
