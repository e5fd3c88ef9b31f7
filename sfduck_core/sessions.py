"""Signed login sessions for the dashboard's re-login cookie (and any other client that needs one).

A session token is a JWT (HS256) naming the user, a random session id and an expiry. Two server-side
checks make it revocable, which a bare signed cookie is not: logging out records the session id as
revoked (in `AuthDatabase`, shared by processes and restarts), and the token carries a keyed
fingerprint of the user's password hash, so changing a password in the users file invalidates every
session issued before. The signing key must be strong: a placeholder or guessable key would let
anyone forge an admin session, so such keys are refused at start-up.
"""

from __future__ import annotations

import hashlib
import hmac
import math
import re
import secrets
import string
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import jwt

from sfduck_core.authdb import AuthDatabase
from sfduck_core.errors import ConfigError
from sfduck_core.files import create_private_file

SESSION_KEY_FILE = ".cookie_key"
MIN_KEY_LENGTH = 32
MIN_KEY_ENTROPY_BITS = 128
DEFAULT_SESSION_HOURS = 12.0
_ALGORITHM = "HS256"
_CLOCK_SLACK_S = 60.0  # processes on one machine may read the clock a moment apart
# Words that mark a key copied from documentation rather than generated.
_PLACEHOLDER_WORDS = (
    "replace", "change", "example", "secret", "password", "random", "characters", "paste", "generated", "xxxx",
)
_PLACEHOLDER_PATTERN = re.compile("|".join(_PLACEHOLDER_WORDS), re.IGNORECASE)
_HEX = frozenset(string.hexdigits.lower()), frozenset(string.hexdigits.upper())
_BASE64 = frozenset(string.ascii_letters + string.digits + "-_+/")
_LONGEST_RUN = 8  # "abcdefgh", "87654321", "zzzzzzzz": never in a generated key (p < 1e-6)
_MOST_SAME_CLASS_NEIGHBOURS = 0.65  # random base64: ~0.36 of neighbours share a class; words ~0.7


@dataclass(frozen=True)
class Session:
    username: str
    session_id: str
    expires_at: float
    password_fingerprint: str  # keyed hash of the password hash the session was issued against


def _is_periodic(key: str) -> bool:
    """A short pattern repeated ("abab...", "0123456789012...") is no key, however long."""
    return any(all(key[i] == key[i + period] for i in range(len(key) - period))
               for period in range(1, len(key) // 2 + 1))


def _longest_constant_step(key: str) -> int:
    """The longest stretch of characters that each follow the previous by the same step of -1, 0 or 1."""
    longest = run = 1
    for i in range(2, len(key)):
        step, before = ord(key[i]) - ord(key[i - 1]), ord(key[i - 1]) - ord(key[i - 2])
        run = run + 1 if step == before and abs(step) <= 1 else 1
        longest = max(longest, run + 1)
    return longest if len(key) > 1 else len(key)


def _class_of(char: str) -> str:
    return "lower" if char.islower() else "upper" if char.isupper() else "digit" if char.isdigit() else "other"


def generated_key_bits(key: str) -> tuple[float, str]:
    """(estimated bits, "" or why the key does not look generated) for a key judged by its form.

    A key cannot prove its own randomness, so sfduck accepts only the forms key generators print:
    hexadecimal (4 bits a character: `openssl rand -hex 32`, `secrets.token_hex`) and base64 or
    base64url (6 bits: `secrets.token_urlsafe`, `openssl rand -base64 32`), and refuses the
    patterns a generator practically never prints but people type: one case only, no digits in
    hex, runs like "abcdefgh", words (neighbours mostly of one character class), repetition.
    """
    body = key.rstrip("=")
    if not body or _is_periodic(body) or _longest_constant_step(body) >= _LONGEST_RUN:
        return 0.0, "it repeats a pattern or a run of characters"
    chars = set(body)
    if any(chars <= alphabet for alphabet in _HEX):
        if not (chars & set(string.digits) and chars - set(string.digits)):
            return 0.0, "a hexadecimal key mixes digits and letters"
        return 4.0 * len(body), ""
    if chars <= _BASE64:
        if not (chars & set(string.ascii_lowercase) and chars & set(string.ascii_uppercase)):
            return 0.0, "a base64 key mixes upper and lower case"
        same = sum(_class_of(a) == _class_of(b) for a, b in zip(body, body[1:], strict=False))
        if same > _MOST_SAME_CLASS_NEIGHBOURS * (len(body) - 1):
            return 0.0, "it reads like words, not like a generator's output"
        return 6.0 * len(body), ""
    return 0.0, "only hexadecimal or base64 keys (what key generators print) are accepted"


def _looks_like_a_placeholder(key: str) -> bool:
    """A placeholder word in a key that would not carry the bits without it. A random key spells
    "xxxx" or "paste" now and then (about 1 in 15,000 of `token_urlsafe(48)`): refusing those would
    turn away a good key, so only what is left once the words are gone is judged."""
    rest = _PLACEHOLDER_PATTERN.sub("", key)
    if rest == key:
        return False
    bits, flaw = generated_key_bits(rest) if len(rest) >= MIN_KEY_LENGTH else (0.0, "short")
    return bool(flaw) or bits < MIN_KEY_ENTROPY_BITS


def check_key_strength(key: str, where: str) -> str:
    """The key itself, or ConfigError naming `where` it came from when it is weak or a placeholder."""
    advice = (f"Set {where} to a generated key of at least {MIN_KEY_ENTROPY_BITS} random bits, e.g. the output of "
              "python -c \"import secrets; print(secrets.token_urlsafe(48))\" or openssl rand -hex 32.")
    if _looks_like_a_placeholder(key):
        raise ConfigError(f"{where} looks like a placeholder, not a generated key. {advice}")
    if len(key) < MIN_KEY_LENGTH:
        raise ConfigError(f"{where} is too short ({len(key)} characters). {advice}")
    bits, flaw = generated_key_bits(key)
    if flaw:
        raise ConfigError(f"{where} is too predictable ({flaw}). {advice}")
    if bits < MIN_KEY_ENTROPY_BITS:
        raise ConfigError(f"{where} is too predictable (about {bits:.0f} random bits for its length and "
                          f"characters). {advice}")
    return key


def resolve_session_key(configured: str | None, key_dir: Path, where: str = "[sfduck] cookie_key") -> str:
    """The signing key: the configured one if strong, else one generated once and kept owner-only.

    A generated key survives restarts, so users stay logged in; deleting the file logs everyone out.
    """
    if configured:
        return check_key_strength(configured, where)
    key_path = Path(key_dir) / SESSION_KEY_FILE
    if not create_private_file(key_path):
        return check_key_strength(key_path.read_text(encoding="ascii").strip(),
                                  f"the key file {key_path} (delete it to make a new one)")
    key = secrets.token_urlsafe(48)
    while generated_key_bits(key)[1] or _looks_like_a_placeholder(key):
        key = secrets.token_urlsafe(48)  # a key the check would refuse later is never written
    key_path.write_text(key + "\n", encoding="ascii")
    return key


class SessionTokens:
    """Issues and checks session tokens; see the module docstring for what makes them revocable."""

    def __init__(self, key: str, db: AuthDatabase, lifetime_s: float = DEFAULT_SESSION_HOURS * 3600,
                 clock: Callable[[], float] = time.time) -> None:
        self._key = key.encode("utf-8")
        self.db = db
        self.lifetime_s = lifetime_s
        self.clock = clock

    def _fingerprint(self, password_hash: str) -> str:
        return hmac.new(self._key, password_hash.encode("utf-8"), hashlib.sha256).hexdigest()[:32]

    def issue(self, username: str, password_hash: str) -> tuple[str, Session]:
        now = self.clock()
        session = Session(username, secrets.token_urlsafe(16), now + self.lifetime_s,
                          self._fingerprint(password_hash))
        claims = {"sub": username, "sid": session.session_id, "iat": int(now), "exp": session.expires_at,
                  "pwd": session.password_fingerprint}
        return jwt.encode(claims, self._key, algorithm=_ALGORITHM), session

    def verify(self, token: str | None, password_hash_of: Callable[[str], str | None]) -> Session | None:
        """The session `token` proves, or None: forged, expired, revoked, or issued before a password change.

        `password_hash_of(username)` gives the user's current hash (None for a removed user).
        """
        if not token:
            return None
        try:
            claims = jwt.decode(token, self._key, algorithms=[_ALGORITHM],
                                options={"require": ["sub", "sid", "exp", "pwd"], "verify_exp": False})
        except jwt.PyJWTError:
            return None
        expires_at = claims["exp"]
        # Only what issue() writes: a number (not a string or a bool), finite (NaN compares false with
        # everything, so it would never expire) and no further away than a session lasts (a year-10^300
        # expiry never expires either).
        if isinstance(expires_at, bool) or not isinstance(expires_at, int | float):
            return None
        if not math.isfinite(expires_at) or expires_at > self.clock() + self.lifetime_s + _CLOCK_SLACK_S:
            return None
        expires_at = float(expires_at)
        session = Session(str(claims["sub"]), str(claims["sid"]), expires_at, str(claims["pwd"]))
        return session if self.is_valid(session, password_hash_of) else None

    def is_valid(self, session: Session, password_hash_of: Callable[[str], str | None]) -> bool:
        """Checked on every use, not only at login, so a logout elsewhere or a new password ends it."""
        current = password_hash_of(session.username)
        if current is None or not session.expires_at > self.clock():  # NaN is not later than now
            return False
        if not hmac.compare_digest(session.password_fingerprint, self._fingerprint(current)):
            return False
        return not self.db.is_revoked(session.session_id)

    def revoke(self, session: Session) -> None:
        self.db.revoke_session(session.session_id, session.expires_at)
