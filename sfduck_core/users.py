"""Who may use the dashboard: the users file, demo users, the cookie key and login throttling.

Kept free of Streamlit so every rule here is unit-tested directly; `sfduck_ui.auth` is the only
caller that touches streamlit-authenticator. Passwords are only ever held as bcrypt hashes; the
demo users' hashes are made at runtime (never committed), and outside demo mode a users file that
still accepts a demo password is refused, so a demo setup cannot leak into a real deployment.
"""

from __future__ import annotations

import copy
import os
import secrets
import threading
import time
from collections import deque
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path
from typing import Any

import bcrypt
import yaml

from sfduck_core.errors import ConfigError

ADMIN = "admin"
ANALYST = "analyst"
ROLES = (ADMIN, ANALYST)
DEFAULT_USERS_FILE = "users.yaml"
USERS_FILE_ENV = "SFDUCK_USERS_FILE"
# The demo credentials: username == password. They exist only in demo mode.
DEMO_PASSWORDS = {ADMIN: "admin", ANALYST: "analyst"}
COOKIE_KEY_FILE = ".cookie_key"
MIN_COOKIE_KEY_LENGTH = 32  # PyJWT warns about shorter HS256 keys


def hash_password(password: str, rounds: int = 12) -> str:
    """A bcrypt hash in the form streamlit-authenticator checks (`$2b$...`)."""
    return bcrypt.hashpw(password.encode("utf-8"), bcrypt.gensalt(rounds)).decode("ascii")


def check_password(password: str, hashed: str) -> bool:
    """True when `password` matches the bcrypt `hashed`; a malformed hash never matches."""
    try:
        return bcrypt.checkpw(password.encode("utf-8"), hashed.encode("utf-8"))
    except ValueError:
        return False


@lru_cache(maxsize=1)
def _demo_hashes() -> dict[str, str]:
    # Cost 10 keeps demo logins quick; made once per process, so no hash is ever committed.
    return {user: hash_password(password, rounds=10) for user, password in DEMO_PASSWORDS.items()}


def demo_users() -> dict[str, dict[str, Any]]:
    """The two demo accounts, in streamlit-authenticator's credentials shape."""
    hashes = _demo_hashes()
    return {
        ADMIN: {"email": "admin@example.invalid", "first_name": "Demo", "last_name": "Admin",
                "password": hashes[ADMIN], "roles": [ADMIN]},
        ANALYST: {"email": "analyst@example.invalid", "first_name": "Demo", "last_name": "Analyst",
                  "password": hashes[ANALYST], "roles": [ANALYST]},
    }


def users_file_path(env: Mapping[str, str] | None = None) -> Path:
    """Where the users YAML lives: $SFDUCK_USERS_FILE, else `users.yaml` (gitignored)."""
    env = os.environ if env is None else env
    return Path(env.get(USERS_FILE_ENV) or DEFAULT_USERS_FILE)


def _validated_users(raw: Any, path: Path) -> dict[str, dict[str, Any]]:
    if not isinstance(raw, dict) or not isinstance(raw.get("usernames"), dict):
        raise ConfigError(
            f"{path} must contain a `usernames:` mapping (see users.example.yaml for the format)."
        )
    users: dict[str, dict[str, Any]] = {}
    for name, entry in raw["usernames"].items():
        username = str(name).strip().lower()  # streamlit-authenticator lower-cases what users type
        if not isinstance(entry, dict):
            raise ConfigError(f"{path}: user {username!r} must be a mapping with password and roles.")
        password = str(entry.get("password") or "")
        if not password.startswith(("$2a$", "$2b$", "$2y$")):
            raise ConfigError(
                f"{path}: user {username!r} has no bcrypt password hash. Make one with "
                "`python -m sfduck_core.users` and paste it as `password:`."
            )
        roles = entry.get("roles") or []
        if isinstance(roles, str):
            roles = [roles]
        unknown = [r for r in roles if r not in ROLES]
        if not roles or unknown:
            raise ConfigError(
                f"{path}: user {username!r} needs `roles:` from {', '.join(ROLES)}"
                + (f" (unknown: {', '.join(map(str, unknown))})." if unknown else ".")
            )
        users[username] = {
            "email": str(entry.get("email") or f"{username}@example.invalid"),
            "first_name": str(entry.get("first_name") or username),
            "last_name": str(entry.get("last_name") or ""),
            "password": password,
            "roles": list(roles),
        }
    return users


def accepts_demo_password(user: str, entry: Mapping[str, Any]) -> bool:
    """Whether `user` is one of the demo logins (admin/admin, analyst/analyst) with its demo password."""
    demo_password = DEMO_PASSWORDS.get(user)
    return demo_password is not None and check_password(demo_password, str(entry.get("password") or ""))


@dataclass(frozen=True)
class UserDirectory:
    """The users allowed in, and whether the demo accounts are among them."""

    users: dict[str, dict[str, Any]]
    demo: bool
    source: str

    def credentials(self) -> dict[str, Any]:
        """A fresh copy in streamlit-authenticator's shape (the library mutates what it is given)."""
        return {"usernames": copy.deepcopy(self.users)}

    def roles_of(self, username: str | None) -> list[str]:
        entry = self.users.get((username or "").lower())
        return list(entry["roles"]) if entry else []

    def verify(self, username: str, password: str) -> bool:
        entry = self.users.get(username.strip().lower())
        # Unknown users still cost one hash check, so timing does not reveal who exists.
        hashed = entry["password"] if entry else _demo_hashes()[ADMIN]
        return check_password(password, hashed) and entry is not None


def load_users(demo: bool, path: Path | None = None) -> UserDirectory:
    """Read the users file (and add the demo users in demo mode).

    Outside demo mode the file is required, and any user who can still log in with a demo password
    is refused: that is the "refuse to start while demo credentials are configured" rule.
    """
    path = path or users_file_path()
    users: dict[str, dict[str, Any]] = {}
    if path.is_file():
        try:
            raw = yaml.safe_load(path.read_text(encoding="utf-8"))
        except yaml.YAMLError as exc:
            raise ConfigError(f"{path} is not valid YAML: {exc}") from None
        users = _validated_users(raw, path)
    if demo:
        merged = {**users, **demo_users()}  # the advertised demo logins always work in demo mode
        return UserDirectory(merged, True, f"demo users + {path}" if users else "demo users")
    if not users:
        raise ConfigError(
            f"No users file at {path}. Copy users.example.yaml to {path} (or point {USERS_FILE_ENV} at "
            "your file) and add users with bcrypt hashes made by `python -m sfduck_core.users`."
        )
    weak = sorted(u for u, entry in users.items() if accepts_demo_password(u, entry))
    if weak:
        raise ConfigError(
            f"{path} still accepts a demo password for {', '.join(weak)}; demo credentials are only allowed "
            "in demo mode. Give these users real passwords (`python -m sfduck_core.users`) and restart."
        )
    return UserDirectory(users, False, str(path))


def resolve_cookie_key(configured: str | None, duckdb_path: Path) -> str:
    """The key that signs the re-login cookie: from secrets, else made once and kept beside the database.

    A generated key survives restarts (users stay logged in) and is readable only by its owner.
    """
    if configured:
        if len(configured) < MIN_COOKIE_KEY_LENGTH:
            raise ConfigError(
                f"[sfduck] cookie_key in secrets.toml is too short; use at least {MIN_COOKIE_KEY_LENGTH} "
                "random characters (python -c \"import secrets; print(secrets.token_urlsafe(48))\")."
            )
        return configured
    key_path = Path(duckdb_path).parent / COOKIE_KEY_FILE
    key_path.parent.mkdir(parents=True, exist_ok=True)
    try:
        fd = os.open(key_path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:
        key = key_path.read_text(encoding="ascii").strip()
        if len(key) < MIN_COOKIE_KEY_LENGTH:
            raise ConfigError(
                f"{key_path} holds a cookie key that is too short; delete it to make a new one."
            ) from None
        return key
    key = secrets.token_urlsafe(48)
    with os.fdopen(fd, "w", encoding="ascii") as handle:
        handle.write(key + "\n")
    return key


@dataclass
class LoginThrottle:
    """Refuse logins for a user after too many recent failures (per process, thread-safe).

    streamlit-authenticator's own `max_login_attempts` does nothing in dict mode, so this is the
    only brake on password guessing. Unknown usernames are throttled the same way as real ones.
    """

    max_failures: int = 5
    window_s: float = 300.0
    lockout_s: float = 300.0
    clock: Callable[[], float] = time.monotonic
    _failures: dict[str, deque[float]] = field(default_factory=dict, repr=False)
    _locked_until: dict[str, float] = field(default_factory=dict, repr=False)
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    @staticmethod
    def _key(username: str) -> str:
        return username.strip().lower()

    def seconds_locked(self, username: str) -> float:
        """How long `username` must still wait before another attempt (0 when allowed)."""
        with self._lock:
            until = self._locked_until.get(self._key(username), 0.0)
            return max(0.0, until - self.clock())

    def record_failure(self, username: str) -> None:
        key, now = self._key(username), self.clock()
        with self._lock:
            recent = self._failures.setdefault(key, deque())
            recent.append(now)
            while recent and recent[0] <= now - self.window_s:
                recent.popleft()
            if len(recent) >= self.max_failures:
                self._locked_until[key] = now + self.lockout_s
                recent.clear()

    def record_success(self, username: str) -> None:
        key = self._key(username)
        with self._lock:
            self._failures.pop(key, None)
            self._locked_until.pop(key, None)

    def refusal_message(self, username: str) -> str | None:
        """What to tell a throttled user, or None when they may try."""
        wait = self.seconds_locked(username)
        if wait <= 0:
            return None
        minutes, seconds = divmod(int(wait + 0.999), 60)
        wait_text = f"{minutes} min {seconds} s" if minutes else f"{seconds} s"
        return (
            f"Too many failed logins for {username.strip()!r}. Try again in {wait_text}, "
            "or ask an admin to check the users file."
        )


def _main() -> None:
    """`python -m sfduck_core.users`: print a bcrypt hash for a users.yaml entry."""
    import getpass

    password = getpass.getpass("Password to hash: ")
    if password != getpass.getpass("Repeat: "):
        raise SystemExit("The passwords differ; nothing printed.")
    if password in DEMO_PASSWORDS.values():
        raise SystemExit("That is a demo password; it is refused outside demo mode. Pick another.")
    print(hash_password(password))


if __name__ == "__main__":
    _main()
