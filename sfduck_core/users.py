"""Who may use the dashboard: the users file, demo users, the cookie key and login throttling.

Kept free of Streamlit so every rule here is unit-tested directly; `sfduck_ui.auth` is the only
caller that touches streamlit-authenticator. Passwords are only ever held as bcrypt hashes; the
demo users' hashes are made at runtime (never committed), and outside demo mode a users file that
still accepts a demo password is refused, so a demo setup cannot leak into a real deployment.
"""

from __future__ import annotations

import copy
import ipaddress
import secrets
import stat
from collections.abc import Mapping
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import Any

import bcrypt
import yaml

from sfduck_core.authdb import AuthDatabase
from sfduck_core.errors import ConfigError

ADMIN = "admin"
ANALYST = "analyst"
ROLES = (ADMIN, ANALYST)
# The demo credentials: username == password. They exist only in demo mode.
DEMO_PASSWORDS = {ADMIN: "admin", ANALYST: "analyst"}


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


def _bcrypt_cost(hashed: str) -> int:
    """The cost factor of a bcrypt hash, the number after its `$2b$` (12 when unreadable, the default)."""
    parts = hashed.split("$")
    return int(parts[2]) if len(parts) > 3 and parts[2].isdigit() else 12


@lru_cache(maxsize=8)
def _decoy_hash(cost: int) -> str:
    """A hash of a random password at `cost`, checked for unknown usernames; made once per cost."""
    return hash_password(secrets.token_urlsafe(16), rounds=max(4, min(cost, 16)))


def demo_users() -> dict[str, dict[str, Any]]:
    """The two demo accounts, in streamlit-authenticator's credentials shape."""
    hashes = _demo_hashes()
    return {
        ADMIN: {"email": "admin@example.invalid", "first_name": "Demo", "last_name": "Admin",
                "password": hashes[ADMIN], "roles": [ADMIN]},
        ANALYST: {"email": "analyst@example.invalid", "first_name": "Demo", "last_name": "Analyst",
                  "password": hashes[ANALYST], "roles": [ANALYST]},
    }


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

    def password_hash_of(self, username: str) -> str | None:
        entry = self.users.get(username.strip().lower())
        return str(entry["password"]) if entry else None

    def verify(self, username: str, password: str) -> bool:
        entry = self.users.get(username.strip().lower())
        return check_password(password, self.hash_to_check(username)) and entry is not None

    def hash_to_check(self, username: str) -> str:
        """The user's hash, or for an unknown name a decoy as expensive as the real ones', so the
        time a refusal takes does not reveal who exists (bcrypt's time is set by its cost)."""
        entry = self.users.get(username.strip().lower())
        return entry["password"] if entry else _decoy_hash(self.bcrypt_cost)

    @property
    def bcrypt_cost(self) -> int:
        """The highest cost among the users' hashes (what a real user's check costs at most)."""
        return max((_bcrypt_cost(entry["password"]) for entry in self.users.values()), default=12)


def load_users(demo: bool, path: Path) -> UserDirectory:
    """Read the users file (and add the demo users in demo mode).

    Outside demo mode the file is required, and any user who can still log in with a demo password
    is refused: that is the "refuse to start while demo credentials are configured" rule.
    """
    users: dict[str, dict[str, Any]] = {}
    if path.is_file():
        if path.stat().st_mode & (stat.S_IWGRP | stat.S_IWOTH):
            raise ConfigError(
                f"{path} can be changed by other users of this machine, who could make themselves admin: "
                f"run `chmod 600 {path}` (owner-only is best: it holds password hashes)."
            )
        try:
            raw = yaml.safe_load(path.read_text(encoding="utf-8"))
        except yaml.YAMLError as exc:
            raise ConfigError(f"{path} is not valid YAML: {exc}") from None
        users = _validated_users(raw, path)
    if demo:
        merged = {**demo_users(), **users}  # a real user of the same name is never shadowed by a demo one
        return UserDirectory(merged, True, f"demo users + {path}" if users else "demo users")
    if not users:
        raise ConfigError(
            f"No users file at {path}. Copy users.example.yaml to {path} (or point SFDUCK_USERS_FILE at "
            "your file) and add users with bcrypt hashes made by `python -m sfduck_core.users`."
        )
    weak = sorted(u for u, entry in users.items() if accepts_demo_password(u, entry))
    if weak:
        raise ConfigError(
            f"{path} still accepts a demo password for {', '.join(weak)}; demo credentials are only allowed "
            "in demo mode. Give these users real passwords (`python -m sfduck_core.users`) and restart."
        )
    return UserDirectory(users, False, str(path))


IPV6_CLIENT_PREFIX = 64  # one IPv6 subscriber (a host, a home, a VM) gets a whole /64 to pick from


def throttled_address(address: str | None) -> str:
    """The client as the throttle counts it: an IPv4 address (an IPv4-mapped IPv6 one too), or the
    /64 an IPv6 address belongs to. Counting single IPv6 addresses would let one client rotate
    through the 2**64 addresses of its own network, each with a fresh allowance."""
    text = (address or "").strip()
    try:
        parsed = ipaddress.ip_address(text.strip("[]").split("%", 1)[0])
    except ValueError:
        return text.lower() or "unknown"
    if isinstance(parsed, ipaddress.IPv6Address):
        if parsed.ipv4_mapped:
            return str(parsed.ipv4_mapped)
        return str(ipaddress.ip_network(f"{parsed}/{IPV6_CLIENT_PREFIX}", strict=False))
    return str(parsed)


@dataclass
class LoginThrottle:
    """Exponential backoff on failed logins, shared through `AuthDatabase` by processes and restarts.

    Past a counter's allowance every further attempt must wait twice as long as the previous one
    (from `base_delay_s` up to `max_delay_s`), instead of a fixed lockout; a counter is forgotten
    `window_s` after its last failure. Unknown usernames are throttled exactly like real ones, so
    the throttle reveals nothing about who exists.

    What slows an attempt down is always the attempt's own address: its failures for this user (the
    tight `pair_allowance`) and for any user (`address_allowance`, against spraying usernames). A
    user-wide counter would let strangers lock a user out from everywhere (50 failures from 50
    addresses did), so failures across addresses only mark the user as under attack (past
    `user_allowance`); then every address the user has not logged in from lately
    (`known_for_s`) gets a single try before its backoff starts, instead of `pair_allowance`. So
    the user's own first attempt from anywhere is always judged, while a distributed attack gets one
    guess per fresh address and then waits like everyone else (the OWASP "device cookie" idea, with
    the address as the device).
    """

    db: AuthDatabase
    base_delay_s: float = 15.0
    max_delay_s: float = 900.0
    window_s: float = 3600.0
    pair_allowance: int = 5
    address_allowance: int = 20
    user_allowance: int = 50
    under_attack_allowance: int = 1
    known_for_s: float = 30 * 86400.0

    @staticmethod
    def _keys(username: str, address: str | None) -> tuple[str, str, str]:
        user, client = username.strip().lower(), throttled_address(address)
        return f"pair:{user}@{client}", f"address:{client}", f"user:{user}"

    def _counters(self, username: str, address: str | None) -> list[tuple[str, int]]:
        """The counters that can slow this attempt down, each with the failures it allows."""
        pair, by_address, by_user = self._keys(username, address)
        under_attack = self.db.failures(by_user, self.window_s)[0] >= self.user_allowance
        known = self.db.is_known_login(pair)
        allowance = self.under_attack_allowance if under_attack and not known else self.pair_allowance
        return [(pair, allowance), (by_address, self.address_allowance)]

    def seconds_to_wait(self, username: str, address: str | None = None) -> float:
        wait = 0.0
        for key, allowance in self._counters(username, address):
            failures, last = self.db.failures(key, self.window_s)
            excess = failures - allowance
            if excess >= 0:
                delay = min(self.base_delay_s * 2 ** min(excess, 30), self.max_delay_s)
                wait = max(wait, last + delay - self.db.clock())
        return wait

    def record_failure(self, username: str, address: str | None = None) -> None:
        for key in self._keys(username, address):
            self.db.record_failure(key, self.window_s)

    def record_success(self, username: str, address: str | None = None) -> None:
        """A correct password clears this user's counter at this address, and makes the address known.

        The address-wide counter stays (it spans users), and so does the user-wide one: one
        success does not end an attack on the user."""
        pair, _, _ = self._keys(username, address)
        self.db.clear_failures(pair)
        self.db.remember_login(pair, self.known_for_s)

    def refusal_message(self, username: str, address: str | None = None) -> str | None:
        """What to tell a throttled user, or None when they may try."""
        wait = self.seconds_to_wait(username, address)
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
