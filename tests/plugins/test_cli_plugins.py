"""emptcp plugins / build / new-plugin."""
from __future__ import annotations

import json
import os
import subprocess
import sys
import time

import pytest

from emptcp.cli.main import main as cli_main

from ..conftest import require

GOOD = """#include "emptcp.h"
SEC("xdp")
int good_act_xdp(struct xdp_md *ctx)
{
	ACTION_PRE_SEC
	ACTION_POST_SEC
}
char LICENSE[] SEC("license") = "GPL";
"""

# reads 4 bytes past the start without a bounds check: the verifier says no
BAD = """#include "emptcp.h"
SEC("xdp")
int bad_act_xdp(struct xdp_md *ctx)
{
	ACTION_PRE_SEC
	__u32 v = *(__u32 *)(data + 100);
	if (v == 42)
		return XDP_DROP;
	ACTION_POST_SEC
}
char LICENSE[] SEC("license") = "GPL";
"""


def run(*argv):
    return cli_main(list(argv))


def test_plugins_json(capsys):
    assert run("plugins", "--json") == 0
    data = json.loads(capsys.readouterr().out)
    builtin = next(p for p in data if p["name"] == "builtin")
    names = {s["name"]: s for s in builtin["stages"]}
    assert names["service"]["params"][0] == {
        "name": "ports", "type": "ports", "default": None, "required": True, "min": None,
        "max": None, "choices": None, "description": "ports and 'lo-hi' ranges"}


def test_build_good(root, tmp_path, capsys):
    src = tmp_path / "good.bpf.c"
    src.write_text(GOOD)
    assert run("build", str(src)) == 0
    out = capsys.readouterr().out
    assert (tmp_path / "good.o").exists() and "verifier accepted 1 program(s): good_act_xdp" in out


def test_build_verifier_rejection(root, tmp_path, capsys):
    src = tmp_path / "bad.bpf.c"
    src.write_text(BAD)
    assert run("build", str(src), "-o", str(tmp_path / "x.o")) == 1
    err = capsys.readouterr().err
    assert "verifier rejected program 'bad_act_xdp'" in err
    assert "bad.bpf.c:6" in err                            # the source line, from BTF line info
    assert "__u32 v = *(__u32 *)(data + 100);" in err
    assert "invalid access to packet" in err


def test_build_compile_error_is_usage(tmp_path, capsys):
    src = tmp_path / "syntax.bpf.c"
    src.write_text("int x(void) { return }\n")
    assert run("build", str(src), "--no-preflight") == 2
    assert "clang failed" in capsys.readouterr().err
    assert run("build", str(tmp_path / "missing.bpf.c")) == 2


def test_new_plugin_rejects_bad_name(tmp_path, capsys):
    assert run("new-plugin", "Bad-Name", "--dir", str(tmp_path / "x")) == 2


@pytest.mark.slow
def test_new_plugin_wheel_install_and_its_tests(root, tmp_path):
    """Scaffold -> wheel -> install into a throw-away target -> the scaffold's own tests pass."""
    t0 = time.monotonic()
    dest = tmp_path / "demo"
    assert run("new-plugin", "demo", "--dir", str(dest)) == 0
    wheels, target = tmp_path / "wheels", tmp_path / "site"
    py = sys.executable
    r = subprocess.run([py, "-m", "pip", "wheel", "-q", "--no-deps", "-w", str(wheels), str(dest)],
                       capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    whl = next(wheels.glob("emptcp_demo-*.whl"))
    r = subprocess.run([py, "-m", "pip", "install", "-q", "--no-deps", "--target", str(target),
                        str(whl)], capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    assert (target / "emptcp_demo" / "bpf" / "demo_sel.o").exists()
    env = dict(os.environ, PYTHONPATH=str(target))
    r = subprocess.run([py, "-m", "pytest", "-q", "-p", "no:cacheprovider", str(dest / "tests")],
                       capture_output=True, text=True, env=env, cwd=str(tmp_path))
    assert r.returncode == 0, r.stdout + r.stderr
    assert "5 passed" in r.stdout
    assert time.monotonic() - t0 < 60
