"""Fixtures of the unit tests: nothing here touches the network or starts an emulator."""

from __future__ import annotations

import pytest


class FakeClock:
    """Time that moves only when a test says so: backoff and expiry without sleeping."""

    def __init__(self) -> None:
        self.now = 1_700_000_000.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()
