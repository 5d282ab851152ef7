import os
import sys

import pytest

sys.path.insert(0, os.path.dirname(__file__))
from rigreq import require_rig  # noqa: E402


@pytest.fixture(autouse=True)
def _rig_requirements():
    require_rig()
