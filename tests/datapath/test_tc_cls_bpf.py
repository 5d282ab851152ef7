"""TC hooks without TCX (kernels before 6.6): emptcp attaches a direct-action cls_bpf
filter instead (issue 13). Forced here with EMPTCP_TC_ATTACH=cls_bpf; the kernel matrix
runs the probed path on 6.1.

The same traffic as the TCX coexistence test; the oracle is a second cls_bpf filter
behind emptcp's (its own counter map) and the link counters: it sees every packet emptcp
did not decide, and nothing of an explicit verdict. Status shows the filter; detach and a
failed apply leave no filter behind (checked with the kernel's own filter query).
"""
from __future__ import annotations

import os
import time
import uuid

import pytest

from emptcp import netns
from emptcp.bpf.objects import ObjectSpec
from emptcp.bpf.tc import TcHook
from emptcp.runtime import tcattach

from .test_tcx_coexist import (KEYS, PINGS, TRANSFER, apply_policy, counter_obj,  # noqa: F401
                               emptcp_link, link_stats, quiet, traffic)

pytestmark = pytest.mark.slow
#: pin roots /sys/fs/bpf/<EMPTCP_TEST_PREFIX or emptcp>-test-<what>-<random>
PREFIX = os.environ.get("EMPTCP_TEST_PREFIX", "").strip() or "emptcp"


def new_pin_root(what: str) -> str:
    return f"/sys/fs/bpf/{PREFIX}-test-{what}-{uuid.uuid4().hex[:8]}"
OTHER_PRIORITY = 0xD000          # a filter someone else added behind emptcp's


@pytest.fixture
def cls_bpf(monkeypatch):
    monkeypatch.setenv(tcattach.ENV, "cls_bpf")


class ClsCounter:
    """The counting program as a cls_bpf filter (handle 1) at a given priority."""

    def __init__(self, obj_path: str, ns: str, ifname: str, direction: str, prio: int) -> None:
        self.obj = ObjectSpec(obj_path).load()
        self.map = self.obj.map("counts", key=int, value=int)
        self.ns, self.prio = ns, prio
        with netns.enter(ns):
            self.hook = TcHook(ifname, direction).create()
            self.hook.attach(self.obj.programs["count_next"], handle=1, priority=prio)

    def counts(self) -> dict[str, int]:
        return {k: self.map[i] for i, k in enumerate(KEYS)}

    def close(self) -> None:
        with netns.enter(self.ns):
            self.hook.detach(1, self.prio)
        self.obj.close()


def ours(ns: str, ifname: str, direction: str) -> list[int]:
    """Priorities at which a filter with emptcp's handle exists (any program)."""
    with netns.enter(ns):
        hook = TcHook(ifname, direction)
        return [p for p in tcattach.CLS_PRIORITY.values()
                if hook.query(tcattach.CLS_HANDLE, p) is not None]


@pytest.mark.parametrize("direction", ["ingress", "egress"])
def test_cls_bpf_filter_passes_on_what_it_does_not_decide(veth_ns, counter_obj, cls_bpf,
                                                         direction):
    from emptcp import api
    v = veth_ns
    quiet(v["a"]), quiet(v["b"])
    ns, ifname = (v["b"], v["b_if"]) if direction == "ingress" else (v["a"], v["a_if"])
    pin_root = new_pin_root("cls")
    after = None
    try:
        apply_policy(v, ns, ifname, f"tc-{direction}", None, pin_root)
        hook = emptcp_link(pin_root, ns)
        att = hook["attached"]
        assert att["mode"] == "cls_bpf" and att["handle"] == tcattach.CLS_HANDLE
        assert att["priority"] == tcattach.CLS_PRIORITY["last"]
        assert ours(ns, ifname, direction) == [tcattach.CLS_PRIORITY["last"]]
        after = ClsCounter(counter_obj, ns, ifname, direction, OTHER_PRIORITY)
        link0 = link_stats(ns, ifname)

        sent = traffic(v)

        link1 = link_stats(ns, ifname)
        a = after.counts()
        assert sent["pings_received"] == PINGS
        assert a["icmp"] == PINGS                      # undecided: the next filter runs
        assert a["tcp5001"] > TRANSFER // 65536        # a chain without a verdict: too
        assert a["tcp9"] == 0 and a["tcp7"] == 0       # drop and pass end the filter list
        counters = emptcp_link(pin_root, ns)["counters"]
        if direction == "ingress":
            assert link1["rx"] - link0["rx"] == counters["packets"]
        assert a["all"] == counters["packets"] - counters["matched"] + \
            emptcp_link(pin_root, ns)["policies"][2]["actions"][0]["counters"]["packets"]
        assert counters["missed_tail_calls"] == 0 and counters["errors"] == 0
    finally:
        with netns.enter(ns):       # ifindexes, and so cls_bpf filters, are per namespace
            api.detach(pin_root=pin_root, all=True)
        if after is not None:
            after.close()
    assert not os.path.exists(pin_root)
    assert ours(ns, ifname, direction) == []           # the kernel has no emptcp filter left


def test_cls_bpf_position_and_failed_apply_leave_nothing(veth_ns, cls_bpf, tmp_path):
    """position = first gets the front priority; an apply that fails after attaching
    (here: killed at its flip step) removes the filter it added, and the previous
    configuration keeps running untouched."""
    from emptcp import api
    from emptcp.runtime.engine import Engine
    v = veth_ns
    ns, ifname = v["b"], v["b_if"]
    pin_root = new_pin_root("cls")

    def stop_at_flip(step: str) -> None:
        if step == "flip":
            raise RuntimeError("stopped before the flip")
    try:
        apply_policy(v, ns, ifname, "tc-ingress", "first", pin_root)
        assert ours(ns, ifname, "ingress") == [tcattach.CLS_PRIORITY["first"]]
        before = emptcp_link(pin_root, ns)
        more = tmp_path / "more.toml"
        more.write_text(f'[hooks.h]\ninterface = "{ifname}"\ntype = "tc-ingress"\n'
                        'position = "first"\n'
                        f'[hooks.e]\ninterface = "{ifname}"\ntype = "tc-egress"\n'
                        '[[policy]]\nname = "x"\nhook = "e"\nactions = [ { use = "count" } ]\n')
        with netns.enter(ns), pytest.raises(RuntimeError, match="before the flip"):
            Engine(pin_root, progress=stop_at_flip).apply(api.load(str(more)))
        assert ours(ns, ifname, "egress") == []                 # its filter went again
        after = emptcp_link(pin_root, ns)
        assert after["attached"] == before["attached"]
        def shape(h):   # the policies as configured (their counters keep moving)
            return [(p["name"], [x["use"] for x in p["selectors"] + p["actions"]])
                    for p in h["policies"]]
        assert shape(after) == shape(before)
    finally:
        with netns.enter(ns):
            api.detach(pin_root=pin_root, all=True)
    assert ours(ns, ifname, "ingress") == [] and not os.path.exists(pin_root)


def test_detach_from_another_namespace_keeps_the_marker(veth_ns, cls_bpf):
    """A cls_bpf filter can only be found from its own network namespace: detach from
    elsewhere refuses (naming the way), rather than dropping the pin and leaking the filter."""
    from emptcp import api
    from emptcp.errors import EmptcpError
    v = veth_ns
    ns, ifname = v["b"], v["b_if"]
    pin_root = new_pin_root("cls")
    try:
        apply_policy(v, ns, ifname, "tc-ingress", None, pin_root)
        with pytest.raises(EmptcpError, match="another network namespace"):
            api.detach(pin_root=pin_root, all=True)
        assert ours(ns, ifname, "ingress") == [tcattach.CLS_PRIORITY["last"]]
    finally:
        with netns.enter(ns):
            api.detach(pin_root=pin_root, all=True)
    assert ours(ns, ifname, "ingress") == [] and not os.path.exists(pin_root)


def test_probe_matches_this_kernel():
    """The probe reads the kernel's BTF: this kernel (>= 6.6 here) has TCX."""
    release = tuple(int(x) for x in os.uname().release.split("-")[0].split(".")[:2])
    assert tcattach.tcx_supported() == (release >= (6, 6))


# ---- SIGKILL while emptcp adds or re-places its filter ----------------------------------
# A TCX link dies with the process that made it until it is pinned; a cls_bpf filter
# outlives it. So whatever moment an apply is killed at, every emptcp filter on the hook
# must be one that status knows (the configuration's, or a stale attachment with its
# program id), and the next apply or detach must remove the rest.
KILL_IN_ATTACH = r"""
import os, signal, sys
from emptcp import api
from emptcp.bpf.programs import Program
from emptcp.bpf.tc import TcHook
point, path, root = sys.argv[1:4]
def die(where):
    if point == where:
        os.kill(os.getpid(), signal.SIGKILL)
def wrap(cls, name, before, after, only=lambda *a, **k: True):
    orig = getattr(cls, name)
    def f(*a, **k):
        mine = only(*a, **k)
        if mine: die(before)
        r = orig(*a, **k)
        if mine: die(after)
        return r
    setattr(cls, name, f)
wrap(TcHook, "attach", "before-filter", "after-filter")
wrap(TcHook, "detach", "before-unfilter", "after-unfilter")
wrap(Program, "pin", "before-pin", "after-pin", lambda self, p: "/links/cls-" in p)
api.apply(path, root)
"""
KILL_POINTS = ("before-filter", "after-filter", "before-pin", "after-pin")
MOVE_POINTS = ("before-unfilter", "after-unfilter", "before-filter", "after-filter")


def filters(ns: str, ifname: str, direction: str) -> dict[int, int]:
    """{priority: program id} of the filters with emptcp's handle on the hook."""
    with netns.enter(ns):
        hook = TcHook(ifname, direction)
        found = {p: hook.query(tcattach.CLS_HANDLE, p) for p in tcattach.CLS_PRIORITY.values()}
    return {p: f.prog_id for p, f in found.items() if f is not None}


def _policy_file(tmp_path, ifname: str, position: str | None) -> str:
    from .test_tcx_coexist import POLICY
    p = tmp_path / f"policy-{position}.toml"
    p.write_text(POLICY.format(ifname=ifname, type="tc-ingress",
                               position=f'position = "{position}"\n' if position else ""))
    return str(p)


def _kill_apply(ns: str, point: str, path: str, pin_root: str) -> None:
    import signal
    import subprocess
    import sys
    p = subprocess.run(["nsenter", f"--net=/var/run/netns/{ns}", "--", sys.executable, "-c",
                        KILL_IN_ATTACH, point, path, pin_root],
                       capture_output=True, text=True, timeout=120)
    assert p.returncode == -signal.SIGKILL, (point, p.returncode, p.stderr[-2000:])


def _accounted(ns: str, ifname: str, pin_root: str) -> dict:
    """Every emptcp filter on the hook is the configuration's or a listed stale one."""
    from emptcp import api
    with netns.enter(ns):
        st = api.status(pin_root)
    known = {h["attached"]["prog_id"] for h in st["hooks"] if h["attached"]}
    known |= {s.get("prog_id") for s in st["stale"]}
    on_hook = filters(ns, ifname, "ingress")
    assert set(on_hook.values()) <= known, (on_hook, st["hooks"], st["stale"])
    for h in st["hooks"]:       # status calls a hook attached only when its filter runs
        if h["attached"]:
            assert on_hook.get(h["attached"]["priority"]) == h["attached"]["prog_id"], \
                (h["attached"], on_hook)
    return st


@pytest.mark.parametrize("point", KILL_POINTS)
def test_killed_first_apply_leaves_no_unknown_filter(veth_ns, cls_bpf, tmp_path, point):
    from emptcp import api
    v = veth_ns
    ns, ifname = v["b"], v["b_if"]
    pin_root = new_pin_root("cls-kill")
    try:
        _kill_apply(ns, point, _policy_file(tmp_path, ifname, None), pin_root)
        st = _accounted(ns, ifname, pin_root)
        assert not st["applied"]                 # killed before its flip
        with netns.enter(ns):                    # the next apply repairs
            api.apply(_policy_file(tmp_path, ifname, None), pin_root)
        st = _accounted(ns, ifname, pin_root)
        assert st["stale"] == [] and list(filters(ns, ifname, "ingress")) == \
            [tcattach.CLS_PRIORITY["last"]]
    finally:
        with netns.enter(ns):
            api.detach(pin_root=pin_root, all=True)
    assert filters(ns, ifname, "ingress") == {} and not os.path.exists(pin_root)


@pytest.mark.parametrize("point", MOVE_POINTS)
def test_killed_position_change_leaves_no_unknown_filter(veth_ns, cls_bpf, tmp_path, point):
    """Killed while re-placing emptcp's filter (position last -> first): the previous
    configuration stays committed, every filter is known, and the next apply of the
    previous configuration (the same digest: no "no changes" while its filter is missing
    or misplaced) puts its filter back where it was; nothing else stays."""
    from emptcp import api
    v = veth_ns
    ns, ifname = v["b"], v["b_if"]
    pin_root = new_pin_root("cls-move")
    last = _policy_file(tmp_path, ifname, None)
    try:
        with netns.enter(ns):
            api.apply(last, pin_root)
            digest = api.status(pin_root)["digest"]
        _kill_apply(ns, point, _policy_file(tmp_path, ifname, "first"), pin_root)
        st = _accounted(ns, ifname, pin_root)
        assert st["applied"] and st["digest"] == digest
        with netns.enter(ns):
            api.apply(last, pin_root)
        st = _accounted(ns, ifname, pin_root)
        assert st["stale"] == [], st["stale"]
        assert st["hooks"][0]["attached"]["priority"] == tcattach.CLS_PRIORITY["last"]
        assert list(filters(ns, ifname, "ingress")) == [tcattach.CLS_PRIORITY["last"]]
    finally:
        with netns.enter(ns):
            api.detach(pin_root=pin_root, all=True)
    assert filters(ns, ifname, "ingress") == {} and not os.path.exists(pin_root)


def test_failed_position_change_puts_the_filter_back(veth_ns, cls_bpf, tmp_path):
    """An apply that re-placed emptcp's filter and then failed puts it back at the
    previous configuration's position (as a TCX link is moved back)."""
    from emptcp import api
    from emptcp.runtime.engine import Engine
    v = veth_ns
    ns, ifname = v["b"], v["b_if"]
    pin_root = new_pin_root("cls-unmove")

    def stop_at_flip(step: str) -> None:
        if step == "flip":
            raise RuntimeError("stopped before the flip")
    try:
        with netns.enter(ns):
            api.apply(_policy_file(tmp_path, ifname, None), pin_root)
        with netns.enter(ns), pytest.raises(RuntimeError, match="before the flip"):
            Engine(pin_root, progress=stop_at_flip).apply(
                api.load(_policy_file(tmp_path, ifname, "first")))
        st = _accounted(ns, ifname, pin_root)
        assert st["stale"] == []
        assert st["hooks"][0]["attached"]["priority"] == tcattach.CLS_PRIORITY["last"]
        assert list(filters(ns, ifname, "ingress")) == [tcattach.CLS_PRIORITY["last"]]
    finally:
        with netns.enter(ns):
            api.detach(pin_root=pin_root, all=True)
    assert filters(ns, ifname, "ingress") == {} and not os.path.exists(pin_root)


def test_a_filter_removed_by_hand_is_not_attached(veth_ns, cls_bpf, tmp_path):
    """status reports a hook attached only while its filter runs; `tc filter del` of
    emptcp's filter shows as not attached, and the next apply of a changed configuration
    attaches it again."""
    from emptcp import api
    v = veth_ns
    ns, ifname = v["b"], v["b_if"]
    pin_root = new_pin_root("cls-gone")
    try:
        with netns.enter(ns):
            api.apply(_policy_file(tmp_path, ifname, None), pin_root)
            TcHook(ifname, "ingress").detach(tcattach.CLS_HANDLE, tcattach.CLS_PRIORITY["last"])
            assert api.status(pin_root)["hooks"][0]["attached"] is None
            api.apply(_policy_file(tmp_path, ifname, "first"), pin_root)
        st = _accounted(ns, ifname, pin_root)
        assert st["hooks"][0]["attached"]["priority"] == tcattach.CLS_PRIORITY["first"]
    finally:
        with netns.enter(ns):
            api.detach(pin_root=pin_root, all=True)
    assert filters(ns, ifname, "ingress") == {} and not os.path.exists(pin_root)


def test_cls_pin_names_round_trip():
    name = tcattach.cls_pin_name("tc-egress", 7)
    hook_type, idx, ns = tcattach.parse_cls_pin(name)
    assert (hook_type, idx) == ("tc-egress", 7) and ns == os.stat("/proc/self/ns/net").st_ino
    # the temporary marker of a re-placement is a cls_bpf marker too (stale, detach)
    assert tcattach.parse_cls_pin(name + tcattach.CLS_TMP_SUFFIX) == (hook_type, idx, ns)
    for bad in ("tc-ingress@veth0", "cls-xdp@if3-ns4", "cls-tc-ingress@ifx-ns4",
                "cls-tc-ingress@if3-ns4-other"):
        assert tcattach.parse_cls_pin(bad) is None, bad


@pytest.mark.parametrize("first,then", [("tcx", "cls_bpf"), ("cls_bpf", "tcx")])
def test_switching_the_attach_mechanism_leaves_one_attachment(veth_ns, tmp_path, monkeypatch,
                                                             first, then):
    """EMPTCP_TC_ATTACH changed between two applies (same configuration, then a changed
    one): the hook ends attached once, the new way; the other kind's attachment goes
    (it would run every packet through emptcp twice)."""
    from emptcp import api
    from emptcp.bpf.links import tcx_query
    v = veth_ns
    ns, ifname = v["b"], v["b_if"]
    pin_root = new_pin_root("cls-switch")

    def kinds() -> tuple[int, int]:
        with netns.enter(ns):
            n_tcx = len(tcx_query(ifname, "ingress"))
        return n_tcx, len(filters(ns, ifname, "ingress"))
    try:
        monkeypatch.setenv(tcattach.ENV, first)
        with netns.enter(ns):
            api.apply(_policy_file(tmp_path, ifname, None), pin_root)
        assert kinds() == ((1, 0) if first == "tcx" else (0, 1))
        monkeypatch.setenv(tcattach.ENV, then)
        with netns.enter(ns):
            res = api.apply(_policy_file(tmp_path, ifname, None), pin_root)  # same digest
            st = api.status(pin_root)
        assert any(f"attached as {then}" in line for line in res.summary), res.summary
        assert kinds() == ((1, 0) if then == "tcx" else (0, 1))
        assert st["hooks"][0]["attached"]["mode"] == then and st["stale"] == []
        with netns.enter(ns):
            assert "no changes" in api.apply(_policy_file(tmp_path, ifname, None),
                                             pin_root).summary[0]
    finally:
        with netns.enter(ns):
            api.detach(pin_root=pin_root, all=True)
    assert not os.path.exists(pin_root)
    # the TCX link goes when its pin's last reference is dropped, which the kernel may
    # finish just after unlink returns (seen once in a full-suite run: still listed)
    deadline = time.monotonic() + 5
    while kinds() != (0, 0):
        assert time.monotonic() < deadline, f"still attached 5 s after detach: {kinds()}"
        time.sleep(0.01)


def test_two_pin_roots_on_one_hook_are_told_apart(veth_ns, cls_bpf, tmp_path):
    """Without TCX one emptcp filter per hook and position: a second pin root's apply is
    refused naming the filter already there and how to remove it, and leaves nothing."""
    from emptcp import api
    from emptcp.errors import EmptcpError
    v = veth_ns
    ns, ifname = v["b"], v["b_if"]
    one, two = new_pin_root("cls-one"), new_pin_root("cls-two")
    try:
        with netns.enter(ns):
            api.apply(_policy_file(tmp_path, ifname, None), one)
            with pytest.raises(EmptcpError) as e:
                api.apply(_policy_file(tmp_path, ifname, None), two)
        msg = str(e.value)
        assert "already sits at priority 49152" in msg and "another emptcp pin root" in msg
        assert "tc filter del dev <interface> ingress protocol all prio 49152 handle 0xe3b7 " \
               "bpf" in msg, msg
        assert not os.path.exists(two)
        assert list(filters(ns, ifname, "ingress")) == [tcattach.CLS_PRIORITY["last"]]
    finally:
        with netns.enter(ns):
            api.detach(pin_root=one, all=True)
            api.detach(pin_root=two, all=True)
    assert filters(ns, ifname, "ingress") == {}
