"""PluginManager: hook specs, registration, validation; each refusal is one clear PluginError."""
from __future__ import annotations

import types

import pytest

import emptcp
from emptcp.errors import PluginError
from emptcp.runtime.events import EV_ADD_SUBFLOW, Tuple, decode, encode
from emptcp.plugins import hookimpl
from emptcp.plugins.manager import PluginManager
from emptcp.stages import ABI_VERSION, HOOKS, StageSpec


def spec(name="good_act", obj=None, programs=None, **kw):
    return StageSpec(name=name, kind="action", hooks=HOOKS,
                     object=obj or emptcp.builtin_object("count"),
                     programs=programs or {"xdp": "emptcp_count_xdp", "tc": "emptcp_count_tc"},
                     **kw)


def plugin(stages=None, raises=None, **hooks):
    ns = types.SimpleNamespace(__name__="fake_plugin")

    @hookimpl
    def emptcp_stages():
        if raises:
            raise raises
        return stages or []
    ns.emptcp_stages = emptcp_stages
    for k, v in hooks.items():
        setattr(ns, k, hookimpl(v))
    return ns


@pytest.fixture
def pm():
    return PluginManager(entrypoints=False)


def refused(pm, name) -> PluginError:
    errs = [e for e in pm.errors if e.plugin == name]
    assert len(errs) == 1, pm.errors
    return errs[0]


def test_builtins_registered_through_hooks(pm):
    st = pm.stages()
    for n in ("count", "drop", "pass", "ip_pair", "service", "mptcp_subtype", "tcp_opt_del"):
        assert n in st and st[n].plugin == "builtin" and st[n].distribution == "emptcp"
    assert st["drop"].terminal and st["ip_pair"].kind == "selector"
    assert pm.errors == []


def test_good_plugin_gets_origin(pm):
    pm.register(plugin([spec()]), "good", distribution="emptcp-good", version="1.0")
    s = pm.stage("good_act")
    assert (s.plugin, s.distribution) == ("good", "emptcp-good")
    assert pm.infos["good"].hooks == ["emptcp_stages"]


def test_wrong_abi_is_refused_others_unaffected(pm):
    pm.register(plugin([spec("old_act", abi_version=ABI_VERSION + 1)]), "old",
                distribution="emptcp-old")
    pm.register(plugin([spec()]), "good", distribution="emptcp-good")
    e = refused(pm, "old")
    assert "emptcp-old" in str(e) and "plugin 'old'" in str(e)
    assert f"ABI {ABI_VERSION + 1}" in str(e) and "rebuild" in str(e)
    assert "old_act" not in pm.stages() and "good_act" in pm.stages()
    assert pm.pm.get_plugin("old") is None   # unregistered: its other hooks never run


def test_broken_object_is_refused(pm, tmp_path):
    bad = tmp_path / "broken.o"
    bad.write_bytes(b"\x7fELF this is not an object")
    pm.register(plugin([spec("broken_act", obj=str(bad))]), "broken", distribution="emptcp-broken")
    e = refused(pm, "broken")
    assert "cannot open object" in e.reason and str(bad) in e.reason
    assert "emptcp-broken" in str(e)


def test_missing_object_is_refused(pm, tmp_path):
    pm.register(plugin([spec("ghost", obj=str(tmp_path / "nope.o"))]), "ghost")
    assert "does not exist" in refused(pm, "ghost").reason


def test_missing_program_is_refused(pm):
    pm.register(plugin([spec("noprog", programs={"xdp": "nope_xdp", "tc": "emptcp_count_tc"})]),
                "noprog", distribution="emptcp-noprog")
    e = refused(pm, "noprog")
    assert "program 'nope_xdp'" in e.reason and "emptcp_count_xdp" in e.reason


def test_wrong_program_type_is_refused(pm):
    pm.register(plugin([spec("swapped", programs={"xdp": "emptcp_count_tc",
                                                   "tc": "emptcp_count_xdp"})]), "swapped")
    assert "not a xdp program" in refused(pm, "swapped").reason


def test_raising_hook_is_refused(pm):
    pm.register(plugin(raises=RuntimeError("boom\nsecond line")), "raiser",
                distribution="emptcp-raiser")
    e = refused(pm, "raiser")
    assert str(e) == ("plugin 'raiser' (distribution emptcp-raiser): "
                      "hook emptcp_stages raised RuntimeError: boom")


def test_not_a_stagespec_is_refused(pm):
    pm.register(plugin(["count"]), "strs")
    assert "not an emptcp.stages.StageSpec" in refused(pm, "strs").reason


def test_duplicate_stage_name_is_refused(pm):
    pm.register(plugin([spec("count")]), "dup", distribution="emptcp-dup")
    e = refused(pm, "dup")
    assert "already provided by plugin 'builtin'" in e.reason
    assert pm.stage("count").plugin == "builtin"


def test_unknown_hook_is_refused(pm):
    ns = plugin([spec()])
    ns.emptcp_stagez = hookimpl(lambda: [])
    pm.register(ns, "typo", distribution="emptcp-typo")
    assert "unknown hook(s) emptcp_stagez" in refused(pm, "typo").reason
    assert "good_act" not in pm.stages()


def test_check_raises_first_error(pm):
    pm.register(plugin(raises=ValueError("x")), "bad")
    with pytest.raises(PluginError, match="plugin 'bad'"):
        pm.check()


def test_handle_event_isolates_failures(pm):
    seen = []

    def ok(event):
        seen.append(event.name)
        return "handled"

    def boom(event):
        raise OSError("netlink down")
    pm.register(plugin(emptcp_handle_event=boom), "boom", distribution="emptcp-boom")
    pm.register(plugin(emptcp_handle_event=ok), "ok")
    t = Tuple(4, "10.0.0.2", "10.0.0.1", 40000, 80)
    ev = decode(encode(EV_ADD_SUBFLOW, t.pack()))
    errors = []
    assert pm.handle_event(ev, on_error=errors.append) == [("ok", "handled")]
    assert seen == ["add_subflow"]
    assert "plugin 'boom' (distribution emptcp-boom)" in str(errors[0])


def test_add_commands_isolates_failures(pm):
    import argparse

    def good(subparsers):
        subparsers.add_parser("good-cmd")

    def bad(subparsers):
        subparsers.add_parser("bad-cmd")
        raise RuntimeError("oops")
    pm.register(plugin(emptcp_add_commands=good), "good")
    pm.register(plugin(emptcp_add_commands=bad), "bad")
    sub = argparse.ArgumentParser().add_subparsers()
    errs = pm.add_commands(sub)
    assert "good-cmd" in sub.choices and "bad-cmd" not in sub.choices
    assert [e.plugin for e in errs] == ["bad"]


def test_event_decode_roundtrip():
    t = Tuple(6, "fd00::2", "fd00::1", 40000, 80, kind="tc-egress")
    ev = decode(encode(EV_ADD_SUBFLOW, t.pack(), hook_id=3, policy=2, stage=1))
    assert ev.name == "add_subflow" and ev.tuple == t
    assert (ev.hook_id, ev.policy, ev.stage) == (3, 2, 1)
    assert t.local_remote == ("fd00::2", 40000, "fd00::1", 80)
    with pytest.raises(ValueError):
        decode(b"\x01\x00")
