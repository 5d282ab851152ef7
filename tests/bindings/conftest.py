import os

import pytest

SRC = os.path.join(os.path.dirname(os.path.abspath(__file__)), "bpf")


@pytest.fixture(scope="session")
def objs(root, compile_objects):
    """Paths of the compiled test objects: basics, sharer, rejected."""
    return compile_objects(SRC)
