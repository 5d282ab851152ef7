import os
import sys

import pytest

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
from rigreq import require_rig  # noqa: E402

@pytest.fixture(autouse=True)
def _rig_requirements():
    require_rig()
