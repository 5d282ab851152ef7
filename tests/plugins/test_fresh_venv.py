"""Acceptance: in a fresh virtual environment, install the core, then emptcp-mptcp
from its directory and from a built wheel; `emptcp plugins` lists its actions, and
uninstalling the plugin removes them."""
import json
import os
import subprocess
import sys

import pytest

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
MPTCP_ACTIONS = {"set_flow_priority", "rm_add_addr", "rm_mp_capable", "add_subflow", "record"}


def listed(venv: str) -> set[str]:
    out = subprocess.run([os.path.join(venv, "bin", "emptcp"), "plugins", "--json"],
                         capture_output=True, text=True, check=True).stdout
    return {s["name"] for p in json.loads(out) for s in p.get("stages", [])}


@pytest.mark.slow
@pytest.mark.root   # not for privileges: it builds wheels (clang) into a fresh venv, a
def test_install_list_uninstall_in_a_fresh_venv(tmp_path):  # minute -- not a quick check
    venv = str(tmp_path / "venv")
    pip = [os.path.join(venv, "bin", "python"), "-m", "pip", "-q"]
    subprocess.run([sys.executable, "-m", "venv", venv], check=True)
    subprocess.run(pip + ["install", REPO], check=True, capture_output=True)
    core = listed(venv)
    assert {"count", "ip_pair", "set_recv_win"} <= core and not MPTCP_ACTIONS & core

    plugin = os.path.join(REPO, "plugins", "emptcp-mptcp")
    subprocess.run(pip + ["install", plugin], check=True, capture_output=True)
    assert MPTCP_ACTIONS <= listed(venv)
    subprocess.run(pip + ["uninstall", "-y", "emptcp-mptcp"], check=True, capture_output=True)
    assert not MPTCP_ACTIONS & listed(venv)

    wheels = str(tmp_path / "wheels")
    subprocess.run(pip + ["wheel", "--no-deps", "-w", wheels, plugin], check=True,
                   capture_output=True)
    (wheel,) = [os.path.join(wheels, f) for f in os.listdir(wheels) if f.endswith(".whl")]
    subprocess.run(pip + ["install", wheel], check=True, capture_output=True)
    assert MPTCP_ACTIONS <= listed(venv)
    subprocess.run(pip + ["uninstall", "-y", "emptcp-mptcp"], check=True, capture_output=True)
    assert not MPTCP_ACTIONS & listed(venv)
