"""Issue 18 item 6: failed logins from many addresses cannot keep a user out, and guessing stays
bounded: one try per fresh address while the user is under attack, then each address backs off."""

from __future__ import annotations

from pathlib import Path

import pytest

from sfduck_core.authdb import AuthDatabase
from sfduck_core.users import LoginThrottle
from tests.unit.conftest import FakeClock


@pytest.fixture
def throttle(tmp_path: Path, clock: FakeClock) -> LoginThrottle:
    return LoginThrottle(AuthDatabase(tmp_path / "auth.sqlite", clock=clock))


def test_failures_from_many_addresses_never_refuse_a_fresh_address(throttle: LoginThrottle) -> None:
    for i in range(200):  # four times what used to lock admin out everywhere
        throttle.record_failure("admin", f"198.51.{i // 250}.{i % 250}")
    assert throttle.refusal_message("admin", "203.0.113.7") is None  # the real admin, from a new address
    throttle.record_success("admin", "203.0.113.7")


def test_under_attack_each_fresh_address_gets_one_guess_then_backs_off(throttle: LoginThrottle,
                                                                         clock: FakeClock) -> None:
    for i in range(50):
        throttle.record_failure("admin", f"198.51.100.{i}")
    attacker = "192.0.2.66"
    assert throttle.seconds_to_wait("admin", attacker) == 0
    throttle.record_failure("admin", attacker)
    assert throttle.seconds_to_wait("admin", attacker) == pytest.approx(15)  # not 5 tries as usual
    clock.now += 15
    throttle.record_failure("admin", attacker)
    assert throttle.seconds_to_wait("admin", attacker) == pytest.approx(30)


def test_an_address_the_user_logged_in_from_keeps_its_usual_allowance(throttle: LoginThrottle) -> None:
    throttle.record_success("admin", "10.0.0.1")
    for i in range(50):
        throttle.record_failure("admin", f"198.51.100.{i}")
    for _ in range(4):  # the real admin mistypes a few times from their usual address
        throttle.record_failure("admin", "10.0.0.1")
    assert throttle.refusal_message("admin", "10.0.0.1") is None
    throttle.record_failure("admin", "10.0.0.1")
    assert throttle.refusal_message("admin", "10.0.0.1")


def test_outside_an_attack_an_address_still_gets_five_tries(throttle: LoginThrottle) -> None:
    for _ in range(4):
        throttle.record_failure("admin", "192.0.2.1")
    assert throttle.seconds_to_wait("admin", "192.0.2.1") == 0


def test_an_ipv6_client_cannot_rotate_through_its_own_network(throttle: LoginThrottle) -> None:
    """One IPv6 client holds a whole /64: each of its addresses must not bring a fresh allowance."""
    for i in range(5):
        throttle.record_failure("admin", f"2001:db8:1:2::{i + 1:x}")
    assert throttle.refusal_message("admin", "2001:db8:1:2:ffff:ffff:ffff:fffe")
    assert throttle.refusal_message("admin", "[2001:db8:1:2::99]")
    assert throttle.refusal_message("admin", "2001:db8:1:3::1") is None  # the next /64 is someone else


def test_an_ipv4_mapped_address_is_the_ipv4_client(throttle: LoginThrottle) -> None:
    for _ in range(5):
        throttle.record_failure("admin", "192.0.2.9")
    assert throttle.refusal_message("admin", "::ffff:192.0.2.9")
