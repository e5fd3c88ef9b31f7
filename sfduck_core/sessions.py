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
import secrets
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import jwt

from sfduck_core.authdb import AuthDatabase
from sfduck_core.errors import ConfigError
from sfduck_core.files import create_private_file

SESSION_KEY_FILE = ".cookie_key"
MIN_KEY_LENGTH = 32
MIN_KEY_ENTROPY_BITS = 90  # a 32-digit hex key (`openssl rand -hex 16`) scores 100-125
DEFAULT_SESSION_HOURS = 12.0
_ALGORITHM = "HS256"
# Words that mark a key copied from documentation rather than generated.
_PLACEHOLDER_WORDS = (
    "replace", "change", "example", "secret", "password", "random", "characters", "paste", "generated", "xxxx",
)


@dataclass(frozen=True)
class Session:
    username: str
    session_id: str
    expires_at: float
    password_fingerprint: str  # keyed hash of the password hash the session was issued against


def _estimated_entropy_bits(key: str) -> float:
    """Shannon entropy of the key's characters times its length: a rough but honest lower bar."""
    counts = Counter(key)
    per_char = -sum(n / len(key) * math.log2(n / len(key)) for n in counts.values())
    return per_char * len(key)


def _is_periodic(key: str) -> bool:
    """A short pattern repeated ("abab...", "0123456789012...") is no key, however long."""
    return any(all(key[i] == key[i + period] for i in range(len(key) - period))
               for period in range(1, len(key) // 2 + 1))


def check_key_strength(key: str, where: str) -> str:
    """The key itself, or ConfigError naming `where` it came from when it is weak or a placeholder."""
    advice = (f"Set {where} to at least {MIN_KEY_LENGTH} random characters, e.g. the output of "
              "python -c \"import secrets; print(secrets.token_urlsafe(48))\".")
    lowered = key.lower()
    if any(word in lowered for word in _PLACEHOLDER_WORDS):
        raise ConfigError(f"{where} looks like a placeholder, not a generated key. {advice}")
    if len(key) < MIN_KEY_LENGTH:
        raise ConfigError(f"{where} is too short ({len(key)} characters). {advice}")
    if _is_periodic(key) or _estimated_entropy_bits(key) < MIN_KEY_ENTROPY_BITS:
        raise ConfigError(f"{where} is too predictable (repeated or few distinct characters). {advice}")
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
        session = Session(str(claims["sub"]), str(claims["sid"]), float(claims["exp"]), str(claims["pwd"]))
        return session if self.is_valid(session, password_hash_of) else None

    def is_valid(self, session: Session, password_hash_of: Callable[[str], str | None]) -> bool:
        """Checked on every use, not only at login, so a logout elsewhere or a new password ends it."""
        current = password_hash_of(session.username)
        if current is None or session.expires_at <= self.clock():
            return False
        if not hmac.compare_digest(session.password_fingerprint, self._fingerprint(current)):
            return False
        return not self.db.is_revoked(session.session_id)

    def revoke(self, session: Session) -> None:
        self.db.revoke_session(session.session_id, session.expires_at)
