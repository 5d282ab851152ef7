import os
import sys
import types

import pytest

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
from rigreq import require_rig  # noqa: E402

# Test the rig of *this* source tree even when site-packages holds an older,
# non-editable copy of emptcp, or when core/emptcp's cffi bindings are not built
# (emptcp.rig does not need them).
_SRC = os.path.join(os.path.dirname(os.path.dirname(HERE)), "core", "emptcp")
try:
    import emptcp  # noqa: E402
except ImportError:
    for k in [k for k in sys.modules if k == "emptcp" or k.startswith("emptcp.")]:
        del sys.modules[k]
    emptcp = types.ModuleType("emptcp")
    emptcp.__path__ = []
    sys.modules["emptcp"] = emptcp
if _SRC not in list(emptcp.__path__):
    emptcp.__path__.insert(0, _SRC)


@pytest.fixture(autouse=True)
def _rig_requirements():
    require_rig()
