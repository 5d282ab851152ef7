"""Fused runs of built-in actions (fused.bpf.c, docs/abi.md 1.2): two or more
consecutive built-in actions (count, set_recv_win, drop, pass, redirect) run as one
program whose operations are frozen .rodata constants.

What must hold, checked in the kernel (BPF_PROG_TEST_RUN) with oracles outside emptcp
(scapy decodes the packet and recomputes its checksums; bpftool dumps the verified
program): a fused run does exactly what the same actions do as separate programs --
verdict, bytes, every stage's counters -- on XDP, tc-ingress and tc-egress; and the
verifier kept only the code of the operations the run has.
"""
from __future__ import annotations

import subprocess

import pytest
from scapy.layers.inet import TCP
from scapy.layers.l2 import Ether

from emptcp import abi
from emptcp.chain.compiler import (HookPolicies, PolicySpec, StageRef, encode_redirect,
                                   encode_service, encode_set_recv_win, encode_tcp_opt_add,
                                   encode_tcp_opt_del)
from emptcp.runtime.generation import PROG_ARRAYS

from .conftest import HOOK_TC_EG, HOOK_TC_IN, HOOK_XDP, LO
from .helpers import ACT, apply, checksums_ok, run, stat, tcp4, tcp6
from .test_instances import markers, prog_array_entries

HOOKS = [("xdp", HOOK_XDP), ("tc-ingress", HOOK_TC_IN), ("tc-egress", HOOK_TC_EG)]


def count() -> StageRef:
    return StageRef("count")


def win(w: int) -> StageRef:
    return StageRef("set_recv_win", encode_set_recv_win(w))


#: chains (name -> actions): windows both immediate (<= 63) and by reference, terminal
#: actions inside and at the end of a run, a non-fusable action splitting two runs
CHAINS = {
    "count-x4": [count(), count(), count(), count()],
    "windows": [count(), win(1000), count(), win(7)],
    "then-drop": [count(), win(300), StageRef("drop"), count()],
    "then-pass": [win(500), count(), StageRef("pass")],
    "redirect": [count(), StageRef("redirect", encode_redirect(LO)), count()],
    "split-by-option": [count(), count(), StageRef("tcp_opt_add", encode_tcp_opt_add(
        bytes([253, 4, 9, 9]))), win(60000), count()],
    "eight": [count(), win(1), count(), win(2), count(), win(3), count(), win(4)],
}


def _run(dp, kind, hook, actions, fuse: bool, frames):
    """(retval, output, [packets of each action stage]) per frame, with the run of
    built-in actions fused or not; generation 1 then 2 so instances change."""
    dp.fuse = fuse
    try:
        apply(dp, 2 if fuse else 1, [HookPolicies(hook, kind, [
            PolicySpec([StageRef("service", encode_service([80]))], actions)])])
        htype = "xdp" if kind == "xdp" else "tc"
        plan = dp.plans[2 if fuse else 1].instances[htype]
        fused = [i for i in plan.values() if isinstance(i.consts, abi.Fused)]
        dp.clear_stats()
        out = []
        for f in frames:
            r = run(dp, kind, f)
            out.append((r.retval, r.data))
        counts = [stat(dp, hook, 0, ACT, s)["packets"] for s in range(len(actions) + 1)]
        hs = dp.hook_stats(hook)
        return out, counts, (hs["missed_tail_calls"], hs["errors"]), fused
    finally:
        dp.fuse = True


@pytest.mark.parametrize("kind,hook", HOOKS)
@pytest.mark.parametrize("chain", sorted(CHAINS))
def test_fused_run_does_what_separate_programs_do(dp, kind, hook, chain):
    actions = CHAINS[chain]
    frames = [tcp4(), tcp6(), tcp4(options=[("MSS", 1460), ("SAckOK", b"")]),
              tcp4(dport=22)]                       # the last matches no policy
    fused_out, fused_counts, fused_err, fused = _run(dp, kind, hook, actions, True, frames)
    plain_out, plain_counts, plain_err, none = _run(dp, kind, hook, actions, False, frames)
    assert fused and not none, "the chain has a run of built-in actions to fuse"
    assert fused_out == plain_out
    assert fused_counts == plain_counts
    assert fused_err == plain_err == (0, 0)
    for (_, data), f in zip(fused_out, frames):
        assert checksums_ok(data), Ether(data).show(dump=True)
        if chain == "windows" and f is not frames[-1]:
            assert Ether(data)[TCP].window == 7          # the last window of the chain
        if chain == "split-by-option" and f is not frames[-1]:
            assert markers(data) == [9] and Ether(data)[TCP].window == 60000


def _xlated(prog_id: int) -> str:
    return subprocess.run(["bpftool", "prog", "dump", "xlated", "id", str(prog_id)],
                          capture_output=True, text=True, check=True).stdout


@pytest.mark.parametrize("kind,hook", [("tc-ingress", HOOK_TC_IN)])
def test_verifier_keeps_only_the_runs_operations(dp, kind, hook):
    """The fused program holds every operation's code; loaded for [count, count] the
    verified program calls none of set_recv_win's or redirect's helpers, loaded for
    [set_recv_win, count] it calls set_recv_win's (bpftool reads what the kernel kept)."""
    apply(dp, 1, [HookPolicies(hook, kind, [
        PolicySpec([StageRef("service", encode_service([80]))], [count(), count()]),
        PolicySpec([StageRef("service", encode_service([22]))], [win(1000), count()])])])
    ids = prog_array_entries(dp, "tc")
    by_ops = {tuple(op for op, _ in i.consts.ops): ids[i.key]
              for i in dp.plans[1].instances["tc"].values() if isinstance(i.consts, abi.Fused)}
    counts = _xlated(by_ops[(abi.OP_COUNT, abi.OP_COUNT)])
    window = _xlated(by_ops[(abi.OP_SET_RECV_WIN, abi.OP_COUNT)])
    for helper in ("bpf_skb_store_bytes", "bpf_l4_csum_replace", "bpf_redirect"):
        assert helper not in counts, helper
    assert "bpf_skb_store_bytes" in window and "bpf_l4_csum_replace" in window
    assert "bpf_redirect" not in window
    assert PROG_ARRAYS["tc"]    # the instances live in the TC prog array


@pytest.mark.parametrize("kind,hook", HOOKS)
def test_missed_tail_call_after_a_fused_run(dp, kind, hook):
    """The action after a fused run is missing from the prog array: the run's own stages
    counted, the missing one counts the missed tail call (its position, cur + n), the
    hook too, and the packet gets no verdict (the drop after it never runs)."""
    htype = "xdp" if kind == "xdp" else "tc"
    opt_del = StageRef("tcp_opt_del", encode_tcp_opt_del(253))
    hooks = [HookPolicies(hook, kind, [PolicySpec([], [count(), win(9), opt_del,
                                                       StageRef("drop")])])]
    apply(dp, 1, hooks)
    (victim,) = [i for i in dp.plans[1].instances[htype].values() if i.stage == "tcp_opt_del"]
    dp.maps[PROG_ARRAYS[htype]].delete(victim.key.to_bytes(4, "little"))
    try:
        r = run(dp, kind, tcp4())
        assert r.retval == (2 if kind == "xdp" else -1)           # XDP_PASS / TC_NEXT
        assert Ether(r.data)[TCP].window == 9 and checksums_ok(r.data)
        assert [stat(dp, hook, 0, ACT, s)["packets"] for s in range(4)] == [1, 1, 0, 0]
        assert stat(dp, hook, 0, ACT, 2)["missed_tail_calls"] == 1
        assert dp.hook_stats(hook)["missed_tail_calls"] == 1
    finally:
        apply(dp, 1, hooks)     # the missing instance is loaded again
