"""The `demo` fixture: emptcp.cli.demo, once the tools and kernel support it needs are here."""
import pytest


@pytest.fixture(scope="module")
def demo(mptcp_kernel):
    from emptcp.cli import demo as d
    return d
