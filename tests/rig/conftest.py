"""Every rig test needs root, MPTCP and the tools the rig drives (see tests/conftest.py)."""
import pytest


@pytest.fixture(autouse=True)
def _rig_requirements(mptcp_kernel):
    pass
