"""Acceptance: in a fresh ``emptcp new-plugin`` directory, exactly the commands
its README lists (``pip install .``, ``emptcp plugins``, ``python -m pytest
tests``) pass when run verbatim from that directory.

They run in the test's own virtual environment (its ``bin`` first on PATH, so
``pip``, ``python`` and ``emptcp`` are the venv's); the plugin is uninstalled
afterwards. This fails when the source package shadows the installed one (the
flat layout: ``python -m`` puts the directory on sys.path, and the sources
have no compiled objects).
"""
from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys

import pytest

from emptcp.cli.main import main as cli_main

from ..conftest import require

NAME = "readmecheck"


def readme_commands(readme: str) -> list[str]:
    """The indented command block under "Run these from this directory"."""
    after = readme.split("Run these from this directory", 1)[1].splitlines()[1:]
    cmds: list[str] = []
    for line in after:
        if line.startswith("    ") and line.strip():
            cmds.append(line.strip())
        elif cmds:
            break
    return cmds


@pytest.mark.slow
def test_scaffold_readme_commands_pass_verbatim(root, tmp_path):
    require(shutil.which("clang") is not None, "clang is not installed")
    require(sys.prefix != sys.base_prefix, "needs to run inside a virtual environment")
    dest = tmp_path / NAME
    assert cli_main(["new-plugin", NAME, "--dir", str(dest)]) == 0
    cmds = readme_commands((dest / "README.md").read_text())
    assert [re.split(r"\s+#", c)[0] for c in cmds] == [
        "pip install .", "emptcp plugins", "python -m pytest tests"], cmds

    env = dict(os.environ, PATH=os.path.dirname(sys.executable) + os.pathsep
               + os.environ.get("PATH", ""))
    for var in ("PYTHONPATH", "PYTEST_ADDOPTS", "VIRTUAL_ENV"):
        env.pop(var, None)
    outputs = []
    try:
        for cmd in cmds:
            r = subprocess.run(cmd, shell=True, cwd=str(dest), env=env,
                               capture_output=True, text=True, timeout=300)
            outputs.append(r.stdout)
            assert r.returncode == 0, f"{cmd}: exit {r.returncode}\n{r.stdout}\n{r.stderr}"
    finally:
        subprocess.run([sys.executable, "-m", "pip", "uninstall", "-q", "-y", f"emptcp-{NAME}"],
                       capture_output=True)
    _, listing, tests = outputs
    assert f"{NAME}_sel" in listing and f"{NAME}_act" in listing, listing
    assert re.search(r"\b5 passed\b", tests) and "skipped" not in tests, tests
