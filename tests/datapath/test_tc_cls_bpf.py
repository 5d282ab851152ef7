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
import uuid

import pytest

from emptcp import netns
from emptcp.bpf.objects import ObjectSpec
from emptcp.bpf.tc import TcHook
from emptcp.runtime import tcattach

from .test_tcx_coexist import (KEYS, PINGS, TRANSFER, apply_policy, counter_obj,  # noqa: F401
                               emptcp_link, link_stats, quiet, traffic)

pytestmark = pytest.mark.slow
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
    pin_root = f"/sys/fs/bpf/emptcp-test-cls-{uuid.uuid4().hex[:8]}"
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
    pin_root = f"/sys/fs/bpf/emptcp-test-cls-{uuid.uuid4().hex[:8]}"

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
    pin_root = f"/sys/fs/bpf/emptcp-test-cls-{uuid.uuid4().hex[:8]}"
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
