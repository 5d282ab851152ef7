"""Regression: the plugin written from the docs only (examples/plugins/emptcp-ttl)
still installs with the installed emptcp and passes its own tests.

The example is copied to a temporary directory (so the build leaves no
build/ or *.egg-info in the source tree), installed with the venv's pip into a
throw-away --target directory (its setup.py compiles the BPF with the installed
emptcp), and its tests run in a subprocess with PYTHONPATH=target, so the
``emptcp`` entry point is discovered exactly as after a real install.
"""
from __future__ import annotations

import os
import shutil
import subprocess
import sys

from ..conftest import require

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
EXAMPLE = os.path.join(REPO, "examples", "plugins", "emptcp-ttl")


def test_doc_written_plugin_installs_and_passes_its_tests(root, tmp_path):
    require(shutil.which("clang") is not None, "clang is not installed")
    src, target = tmp_path / "emptcp-ttl", tmp_path / "site"
    shutil.copytree(EXAMPLE, src, ignore=shutil.ignore_patterns(
        "build", "*.egg-info", "__pycache__", "*.o", ".pytest_cache"))
    py = sys.executable
    r = subprocess.run([py, "-m", "pip", "install", "-q", "--no-deps", "--target", str(target),
                        str(src)], capture_output=True, text=True)
    assert r.returncode == 0, r.stdout + r.stderr
    pkg = target / "emptcp_ttl"
    for name in ("set_ttl.o", "ttl_below.o",                     # compiled at build time
                 "set_ttl.bpf.c", "ttl_below.bpf.c", "emptcp_ttl.h"):   # sources ship too
        assert (pkg / "bpf" / name).exists(), name

    env = dict(os.environ, PYTHONPATH=str(target))
    env.pop("PYTEST_ADDOPTS", None)
    # the entry point is found from the target dir, and it is this copy that loads
    r = subprocess.run([py, "-c", "import emptcp_ttl; from emptcp.plugins.manager import "
                        "PluginManager; pm = PluginManager(); print(emptcp_ttl.__file__); "
                        "print(pm.stage('set_ttl').plugin, [str(e) for e in pm.errors])"],
                       capture_output=True, text=True, env=env, cwd=str(tmp_path))
    assert r.returncode == 0, r.stderr
    assert r.stdout.splitlines()[0].startswith(str(target)), r.stdout
    assert r.stdout.splitlines()[1] == "ttl []", r.stdout

    r = subprocess.run([py, "-m", "pytest", "-q", "-p", "no:cacheprovider",
                        str(src / "tests")],
                       capture_output=True, text=True, env=env, cwd=str(tmp_path))
    out = r.stdout + r.stderr
    assert r.returncode == 0, out
    assert " passed" in r.stdout and "skipped" not in r.stdout and "failed" not in r.stdout, out
