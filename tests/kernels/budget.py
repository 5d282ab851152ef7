"""Time budgets of a matrix run (pure code): a hard limit per kernel (boot included) and
one for the whole run. A kernel is started only with enough of the overall budget left
to boot and run something; it gets the smaller of its own limit and what is left.

The CI profile's numbers (``--ci``), measured on a 2-CPU machine under TCG: a guest
boots in ~80-100 s, ``stage-load`` takes ~35-55 s per kernel; each CLI check ~20-40 s;
a demo ~20-230 s (its own limit in the guest is 360 s, guest.DEMO_TIME_LIMIT). CI as a whole must finish within
90 minutes, and the host's full suite takes ~10 of them.
"""
from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Callable

#: the CI profile: seconds per kernel (boot included) and for the whole matrix
CI_PER_KERNEL = 900.0
CI_TOTAL = 2100.0
#: the full profile's limit per kernel (no overall limit)
FULL_PER_KERNEL = 1200.0
#: below this much overall budget a kernel is not started (a boot alone takes ~100 s)
MIN_START = 180.0


def now() -> float:
    """The clock of a run (a function, so that tests can replace it)."""
    return time.monotonic()


@dataclass
class Budget:
    """``total``: seconds for the whole run (None: unbounded); ``per_kernel``: seconds for
    one kernel, boot included. ``clock`` is injectable for tests."""
    per_kernel: float
    total: float | None = None
    min_start: float = MIN_START
    clock: Callable[[], float] = time.monotonic
    started: float = field(default=-1.0)

    def __post_init__(self) -> None:
        if self.per_kernel <= 0 or (self.total is not None and self.total <= 0):
            raise ValueError("time budgets must be positive")
        if self.started < 0:
            self.started = self.clock()

    def elapsed(self) -> float:
        return self.clock() - self.started

    def remaining(self) -> float | None:
        """Seconds left of the overall budget (None: unbounded)."""
        return None if self.total is None else max(0.0, self.total - self.elapsed())

    def for_kernel(self) -> float | None:
        """The time limit for the next kernel, or None when too little is left to start it."""
        left = self.remaining()
        if left is None:
            return self.per_kernel
        if left < min(self.min_start, self.per_kernel):
            return None
        return min(self.per_kernel, left)

    def describe(self) -> str:
        total = "unbounded" if self.total is None else f"{self.total:.0f} s"
        return f"{self.per_kernel:.0f} s per kernel (boot included), {total} overall"
