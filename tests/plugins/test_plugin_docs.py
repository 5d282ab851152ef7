"""What docs/plugins.md promises a plugin author: pydoc of the hook specs,
the scaffold README's policy, ChainHarness.stage_stats."""
from __future__ import annotations

import importlib
import os
import re
import shutil
import subprocess
import sys

import pytest

from emptcp.cli import plugin_commands as cli_plugins
from emptcp.cli.main import main as cli_main

from ..conftest import require


def test_pydoc_shows_the_hookspec_module():
    r = subprocess.run([sys.executable, "-m", "pydoc", "emptcp.plugins.hookspec"],
                       capture_output=True, text=True, env=dict(os.environ, PAGER="cat"))
    assert r.returncode == 0, r.stderr
    assert "Help on module emptcp.plugins.hookspec" in r.stdout
    for hook in ("emptcp_stages", "emptcp_handle_event", "emptcp_add_commands"):
        assert hook in r.stdout
    # documented hooks are the ones emptcp calls: no spec for a hook nothing calls
    assert "emptcp_stage_object" not in r.stdout
    assert "HookspecMarker" not in r.stdout.split("FUNCTIONS")[0]
    # the docstrings name commands that exist
    assert "apply --follow" not in r.stdout and "events -v" not in r.stdout
    assert "emptcp run FILE" in r.stdout


def test_plugins_package_exports():
    import types

    import emptcp.plugins as plugins
    assert isinstance(plugins.hookspec, types.ModuleType)      # the submodule, not the marker
    from emptcp.plugins import hookimpl, hookspec_marker       # noqa: F401
    assert "hookspec" not in plugins.__all__


def _toml_block(readme: str) -> str:
    blocks = re.findall(r"```toml\n(.*?)```", readme, re.S)
    assert len(blocks) == 1, blocks
    return blocks[0]


@pytest.fixture
def scaffold(tmp_path):
    """``emptcp new-plugin docz --dir ...`` with its objects compiled in place, imported."""
    require(shutil.which("clang") is not None, "clang is not installed")
    from emptcp.plugin_build import compile_package_bpf
    dest = tmp_path / "somewhere" / "docz-plugin"
    assert cli_main(["new-plugin", "docz", "--dir", str(dest)]) == 0
    pkg = dest / "src" / "emptcp_docz"
    compile_package_bpf(str(pkg), str(pkg))
    sys.path.insert(0, str(dest / "src"))
    try:
        yield dest, importlib.import_module("emptcp_docz")
    finally:
        sys.path.remove(str(dest / "src"))
        sys.modules.pop("emptcp_docz", None)


def test_scaffold_readme_policy_is_valid(scaffold):
    from emptcp.chain.config import parse_text, resolve
    from emptcp.plugins.manager import PluginManager
    dest, module = scaffold
    readme = (dest / "README.md").read_text()
    # commands are relative to the plugin directory, never ./NAME
    assert "./docz" not in readme and "pip install ." in readme

    pm = PluginManager(entrypoints=False)
    info = pm.register(module, "docz", distribution="emptcp-docz")
    assert info.ok and not pm.errors, pm.errors
    assert pm.stage("docz_sel").programs == {"xdp": "emptcp_docz_sel_xdp",
                                             "tc": "emptcp_docz_sel_tc"}
    cfg, loc = parse_text(_toml_block(readme), "README.md")
    res = resolve(cfg, pm.stages(), loc, check_interfaces=False)
    (hook,) = res.hooks.values()
    (policy,) = hook.policies
    assert [s.spec.name for s in policy.selectors] == ["docz_sel"]
    assert [s.spec.name for s in policy.actions] == ["docz_act"]


def test_chain_harness_stage_stats(root):
    from emptcp.plugins.testing import ChainHarness
    frame = bytes(14) + b"\x45" + bytes(19)
    with ChainHarness(builtins=("count", "drop", "pass")) as h:
        h.policy("tc-ingress", actions=["count", "count", "pass"])
        for _ in range(3):
            assert h.run("tc-ingress", frame).retval == 0
        assert h.stage_stats("tc-ingress", policy=0, stage=1)["packets"] == 3
        assert h.stage_stats("tc-ingress", 0, 2, "actions")["bytes"] == 3 * len(frame)
        assert h.stage_stats("tc-ingress", 0, 0, "selectors")["packets"] == 0
        with pytest.raises(ValueError):
            h.stage_stats("tc-ingress", phase="sideways")
        h.clear()
        assert h.stage_stats("tc-ingress", 0, 1)["packets"] == 0
        assert h.hook_stats("tc-ingress")["packets"] == 0
