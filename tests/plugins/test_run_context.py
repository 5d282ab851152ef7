"""What `emptcp run` gives event handlers besides the event: the ``run`` argument
(:class:`emptcp.plugins.context.RunContext`), and the ``[plugins.NAME]`` tables of a
policy file it reads. No kernel needed."""
from __future__ import annotations

import pytest

from emptcp.chain.config import parse_text, resolve
from emptcp.errors import ConfigError
from emptcp.plugins import hookimpl
from emptcp.plugins.context import RunContext
from emptcp.plugins.manager import PluginManager

POLICY = """
[hooks.h]
interface = "lo"
type = "tc-egress"

[[policy]]
name = "p"
hook = "h"
selectors = [ { use = "tcp4tuple", entries = [] } ]
actions = [ { use = "count" } ]
"""


def test_handlers_get_run_only_when_they_ask_for_it():
    got: dict = {}

    class Plain:
        @hookimpl
        def emptcp_handle_mptcp_event(self, event):
            got["plain"] = event
            return "plain"

    class WithRun:
        @hookimpl
        def emptcp_handle_mptcp_event(self, event, run):
            got["with_run"] = (event, run)
            return run.pin_root if run is not None else None

        @hookimpl
        def emptcp_handle_event(self, run, event):
            return (run, event)

    pm = PluginManager(builtins=False, entrypoints=False)
    assert pm.register(Plain(), "plain").ok and pm.register(WithRun(), "withrun").ok
    ctx = RunContext("/sys/fs/bpf/nowhere")
    res = dict(pm.handle_mptcp_event("ev", run=ctx))
    assert res == {"plain": "plain", "withrun": "/sys/fs/bpf/nowhere"}
    assert got == {"plain": "ev", "with_run": ("ev", ctx)}
    assert pm.handle_event("e2", run=ctx) == [("withrun", (ctx, "e2"))]
    # a caller without a context (tests, emptcp events) gives run=None
    # a caller without a context (a test, `emptcp events`) gives run=None
    assert pm.handle_mptcp_event("ev3") == [("plain", "plain")]
    assert got["with_run"] == ("ev3", None)


def test_run_context_reads_nothing_when_nothing_is_applied(tmp_path):
    ctx = RunContext(str(tmp_path / "no-pin-root"))
    assert ctx.config() == {} and ctx.settings("mptcp") == {}


def test_plugin_settings_tables_are_kept_and_part_of_the_digest():
    text = POLICY + '\n[plugins.mptcp.metered]\ninterfaces = ["wwan0"]\npolicy = "p"\n'
    cfg, loc = parse_text(text)
    assert cfg.plugins == {"mptcp": {"metered": {"interfaces": ["wwan0"], "policy": "p"}}}
    assert cfg.to_dict()["plugins"] == cfg.plugins
    again, _ = parse_text(cfg.to_toml())
    assert again == cfg
    pm = PluginManager(entrypoints=False)
    d1 = resolve(cfg, pm.stages(), loc).digest()
    d0 = resolve(parse_text(POLICY)[0], pm.stages()).digest()
    cfg.plugins["mptcp"]["metered"]["interfaces"] = ["wwan1"]
    d2 = resolve(cfg, pm.stages()).digest()
    assert len({d0, d1, d2}) == 3


@pytest.mark.parametrize("extra, message", [
    ("[plugins]\nmptcp = 3\n", "[plugins.mptcp] must be a table"),
    ("plugins = [1]\n", "must be a table of [plugins.NAME] tables"),
    ("[mptcp]\nx = 1\n", "unknown top-level key(s): mptcp"),
])
def test_bad_plugin_tables_are_refused(extra, message):
    with pytest.raises(ConfigError, match=message.replace("[", r"\[").replace("]", r"\]")
                       .replace("(", r"\(").replace(")", r"\)")):
        parse_text(extra + POLICY)


def test_tcp4tuple_takes_an_empty_list_not_an_empty_file(tmp_path):
    pm = PluginManager(entrypoints=False)
    cfg, loc = parse_text(POLICY)
    resolve(cfg, pm.stages(), loc)          # entries = []: a set filled at run time
    empty = tmp_path / "none.txt"
    empty.write_text("# nothing\n")
    cfg, loc = parse_text(POLICY.replace("entries = []", f'entries = "{empty}"'))
    with pytest.raises(ConfigError, match="needs at least one connection"):
        resolve(cfg, pm.stages(), loc)
