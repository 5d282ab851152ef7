"""Retiring a generation waits for an RCU grace period (membarrier GLOBAL)."""
import time

from emptcp.runtime.rcu import wait_grace_period

from ..conftest import require


def test_grace_period_is_available_and_short():
    t = time.monotonic()
    ok = wait_grace_period()
    require(ok, "membarrier(MEMBARRIER_CMD_GLOBAL) unavailable (nohz_full?): the engine "
                "falls back to a fixed wait")
    assert time.monotonic() - t < 1.0
