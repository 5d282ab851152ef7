"""A plugin whose objects can never load is listed with the reason
(PluginManager.load_problems, `emptcp plugins [--verify]`), and a verifier
failure inside an emptcp header also names the author's own line
(`emptcp build`)."""
from __future__ import annotations

import os
import shutil
import subprocess
import sys
import types

import pytest

from emptcp.build.compile import compile_bpf
from emptcp.cli.main import main as cli_main
from emptcp.stages import HOOKS, StageSpec

from ..conftest import require

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.dirname(os.path.dirname(HERE))


@pytest.fixture
def objects(tmp_path):
    require(shutil.which("clang") is not None, "clang is not installed")
    return {n: compile_bpf(os.path.join(HERE, "bpf", f"{n}.bpf.c"), str(tmp_path / f"{n}.o"),
                           include_dirs=[os.path.join(REPO, "bpf", "common")])
            for n in ("rejected", "old_abi")}


def manager_with(objects):
    from emptcp.plugins import hookimpl
    from emptcp.plugins.manager import PluginManager
    mod = types.ModuleType("emptcp_brokenobjs")

    @hookimpl
    def emptcp_stages():
        return [StageSpec(name=n, kind="action", hooks=("xdp",), object=o,
                          programs={"xdp": f"emptcp_{n}_xdp"}) for n, o in objects.items()]
    mod.emptcp_stages = emptcp_stages
    pm = PluginManager(entrypoints=False)
    info = pm.register(mod, "brokenobjs", distribution="emptcp-brokenobjs")
    assert info.ok, info.error            # both pass validation: they parse fine
    return pm


def test_load_problems_without_root_sees_an_abi_mismatch(objects):
    problems = manager_with(objects).load_problems(load=False)
    assert set(problems) == {"old_abi"}
    assert "emptcp_hook_stats" in problems["old_abi"] and "rebuild" in problems["old_abi"]


def test_load_problems_with_the_verifier(root, objects):
    problems = manager_with(objects).load_problems(load=True)
    assert set(problems) == {"old_abi", "rejected"}
    assert "emptcp_rejected_xdp" in problems["rejected"]
    assert "emptcp build" in problems["rejected"]


def test_installed_plugins_all_load(root, capsys):
    # built-ins and the installed plugins (emptcp-mptcp) pass the full check
    assert cli_main(["plugins", "--verify"]) == 0
    out = capsys.readouterr()
    assert "CANNOT LOAD" not in out.out and "set_recv_win" in out.out, out.out
    assert cli_main(["plugins"]) == 0
    assert "emptcp plugins --verify" in capsys.readouterr().out


def test_build_names_the_callers_line_for_a_failure_inside_a_header(root, tmp_path, capsys):
    require(shutil.which("clang") is not None, "clang is not installed")
    src = tmp_path / "rejected.bpf.c"
    shutil.copy(os.path.join(HERE, "bpf", "rejected.bpf.c"), src)
    assert cli_main(["build", str(src), "-o", str(tmp_path / "r.o")]) == 1
    err = capsys.readouterr().err
    lines = err.splitlines()
    at = next(ln for ln in lines if ln.startswith("at "))
    assert at.startswith("at emptcp_tcpopt.h:"), err
    assert any(ln.startswith("last line of your code before it: rejected.bpf.c:")
               for ln in lines), err
