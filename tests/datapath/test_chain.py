"""Policy chains end to end through the entry programs (BPF_PROG_TEST_RUN)."""
from __future__ import annotations

import pytest

from emptcp import abi
from emptcp.runtime.generation import PROG_ARRAYS
from scapy.layers.inet import TCP
from scapy.layers.l2 import Ether

from emptcp.chain.compiler import (HookPolicies, PolicySpec, StageRef, encode_ip_pair,
                                   encode_service, encode_set_recv_win, encode_tcp4tuple,
                                   encode_tcp2tuple)

from .conftest import (HOOK_TC_EG, HOOK_TC_IN, HOOK_XDP, TC_ACT_OK, TC_ACT_SHOT, TC_NEXT,
                       XDP_DROP, XDP_PASS)
from .helpers import ACT, SEL, apply, checksums_ok, run, stat, tcp4, tcp6

# pass_: the verdict of a packet emptcp does not decide (unmatched, or a chain
# without a terminal action): XDP_PASS, and TCX_NEXT on TC (docs/abi.md "Verdicts")
KINDS = [("xdp", HOOK_XDP, XDP_PASS, XDP_DROP), ("tc-ingress", HOOK_TC_IN, TC_NEXT, TC_ACT_SHOT)]


def two_policies(hook, kind):
    # policy 0: local 10.0.0.1 (dst on ingress), remote 10.0.0.0/24, port 80
    #           -> count, set_recv_win 5000, count
    # policy 1: port 22 -> drop
    return [HookPolicies(hook, kind, [
        PolicySpec([StageRef("ip_pair", encode_ip_pair("10.0.0.1/32", "10.0.0.0/24")),
                    StageRef("service", encode_service([80]))],
                   [StageRef("count"), StageRef("set_recv_win", encode_set_recv_win(5000)),
                    StageRef("count")]),
        PolicySpec([StageRef("service", encode_service([(22, 22)]))], [StageRef("drop")]),
    ])]


@pytest.mark.parametrize("kind,hook,pass_,drop", KINDS)
def test_two_policies_match_runs_every_stage(dp, kind, hook, pass_, drop):
    apply(dp, 1, two_policies(hook, kind))
    res = run(dp, kind, tcp4())
    assert res.retval == pass_
    out = Ether(res.data)
    assert out[TCP].window == 5000
    assert checksums_ok(res.data)
    for stage in range(3):
        assert stat(dp, hook, 0, ACT, stage)["packets"] == 1, stage
    # built-in selectors are lookups in the entry, not stages: they run no program
    for pol, stage in ((0, 0), (0, 1), (1, 0)):
        assert stat(dp, hook, pol, SEL, stage)["packets"] == 0
    hs = dp.hook_stats(hook)
    assert hs["packets"] == 1 and hs["matched"] == 1 and hs["missed_tail_calls"] == 0


@pytest.mark.parametrize("kind,hook,pass_,drop", KINDS)
def test_second_policy_and_nonmatching(dp, kind, hook, pass_, drop):
    apply(dp, 2, two_policies(hook, kind))
    assert run(dp, kind, tcp4(dport=22)).retval == drop
    assert stat(dp, hook, 1, ACT, 0)["packets"] == 1
    frame = tcp4(src="192.168.1.1", dport=443)
    res = run(dp, kind, frame)
    assert res.retval == pass_
    assert res.data == frame            # untouched
    hs = dp.hook_stats(hook)
    assert hs["unmatched"] == 1 and hs["matched"] == 1
    assert stat(dp, hook, 0, ACT, 0)["packets"] == 0


# program selectors (not classified by the entry): mptcp_subtype; the packet
# carries an MP_CAPABLE option (subtype 0) and no MP_PRIO (subtype 5)
MPC = tcp4(options=[(30, bytes([0x01, 0x81]) + bytes(8))])


def test_and_or_with_short_circuit(dp):
    hook = HOOK_XDP
    miss = StageRef("mptcp_subtype", 5)
    hit = StageRef("mptcp_subtype", 0)
    # (miss AND hit) -> no match, hit skipped; (miss OR hit) -> match
    apply(dp, 1, [HookPolicies(hook, "xdp", [
        PolicySpec([miss, StageRef("mptcp_subtype", 0)], [StageRef("drop")]),
        PolicySpec([miss, StageRef("mptcp_subtype", 0, op="or")], [StageRef("count")]),
    ])])
    res = run(dp, "xdp", MPC)
    assert res.retval == XDP_PASS
    assert stat(dp, hook, 0, SEL, 0)["packets"] == 1
    assert stat(dp, hook, 0, SEL, 1)["packets"] == 0     # AND after false: skipped
    assert stat(dp, hook, 1, SEL, 1)["packets"] == 1     # OR after false: evaluated
    assert stat(dp, hook, 1, ACT, 0)["packets"] == 1
    # (hit OR miss): miss is skipped, actions run
    apply(dp, 2, [HookPolicies(hook, "xdp", [
        PolicySpec([hit, StageRef("mptcp_subtype", 5, op="or")], [StageRef("drop")])])])
    dp.clear_stats()
    assert run(dp, "xdp", MPC).retval == XDP_DROP
    assert stat(dp, hook, 0, SEL, 1)["packets"] == 0


def test_builtin_selectors_decide_before_program_selectors_run(dp):
    """A rule whose built-in terms do not hold never runs its program selectors."""
    hook = HOOK_XDP
    apply(dp, 1, [HookPolicies(hook, "xdp", [
        PolicySpec([StageRef("service", encode_service([9999])), StageRef("mptcp_subtype", 0)],
                   [StageRef("drop")]),
        PolicySpec([StageRef("service", encode_service([80])), StageRef("mptcp_subtype", 0)],
                   [StageRef("count")]),
    ])])
    assert run(dp, "xdp", MPC).retval == XDP_PASS
    assert stat(dp, hook, 0, SEL, 1)["packets"] == 0
    assert stat(dp, hook, 1, SEL, 1)["packets"] == 1
    assert stat(dp, hook, 1, ACT, 0)["packets"] == 1


def test_eight_selectors_and_eight_actions(dp):
    hook = HOOK_XDP
    sel = StageRef("ip_pair", encode_ip_pair("10.0.0.1/32", "10.0.0.2/32"))
    apply(dp, 3, [HookPolicies(hook, "xdp", [
        PolicySpec([sel] * 8, [StageRef("count")] * 8)])])
    assert run(dp, "xdp", tcp4()).retval == XDP_PASS
    for s in range(8):
        assert stat(dp, hook, 0, ACT, s)["packets"] == 1, s
    apply(dp, 2, [HookPolicies(hook, "xdp", [
        PolicySpec([StageRef("mptcp_subtype", 0)] * 8, [StageRef("count")] * 8)])])
    dp.clear_stats()
    assert run(dp, "xdp", MPC).retval == XDP_PASS
    for phase in (SEL, ACT):
        for s in range(8):
            assert stat(dp, hook, 0, phase, s)["packets"] == 1, (phase, s)


def instance_key(dp, gen, htype, stage):
    """The prog-array key of the one instance of action ``stage`` in ``gen``."""
    (inst,) = [i for i in dp.plans[gen].instances[htype].values() if i.stage == stage]
    return inst.key.to_bytes(4, "little")


def test_missing_stage_counts_missed_tail_call(unfused):
    dp, hook = unfused, HOOK_XDP
    hooks = [HookPolicies(hook, "xdp", [PolicySpec([], [StageRef("count"), StageRef("drop")])])]
    apply(dp, 1, hooks)
    progs = dp.maps[PROG_ARRAYS["xdp"]]
    progs.delete(instance_key(dp, 1, "xdp", "drop"))
    try:
        assert run(dp, "xdp", tcp4()).retval == XDP_PASS   # never the drop
        assert stat(dp, hook, 0, ACT, 0)["packets"] == 1
        assert stat(dp, hook, 0, ACT, 1)["missed_tail_calls"] == 1
        assert dp.hook_stats(hook)["missed_tail_calls"] == 1
    finally:
        apply(dp, 1, hooks)     # a missing instance is loaded again
    assert run(dp, "xdp", tcp4()).retval == XDP_DROP


def test_generation_flip_is_per_packet_snapshot(dp):
    hook = HOOK_XDP
    apply(dp, 1, [HookPolicies(hook, "xdp", [PolicySpec([], [StageRef("drop")])])])
    assert run(dp, "xdp", tcp4()).retval == XDP_DROP
    apply(dp, 2, [HookPolicies(hook, "xdp", [PolicySpec([], [StageRef("pass")])])])
    assert run(dp, "xdp", tcp4()).retval == XDP_PASS
    dp.flip(1)
    assert run(dp, "xdp", tcp4()).retval == XDP_DROP


def test_repeat_reuses_metadata(dp):
    apply(dp, 1, [HookPolicies(HOOK_XDP, "xdp", [PolicySpec([], [StageRef("count")])])])
    assert run(dp, "xdp", tcp4(), repeat=100).retval == XDP_PASS
    assert stat(dp, HOOK_XDP, 0, ACT, 0)["packets"] == 100
    assert dp.hook_stats(HOOK_XDP)["errors"] == 0


def test_local_remote_direction_on_tc(dp):
    # egress: local = source
    pol = [PolicySpec([StageRef("ip_pair", encode_ip_pair("10.0.0.2/32", "10.0.0.1/32")),
                       StageRef("tcp4tuple", encode_tcp4tuple("10.0.0.2", 40000, "10.0.0.1", 80)),
                       StageRef("tcp2tuple", encode_tcp2tuple(ports=(40000, 80)))],
                      [StageRef("drop")])]
    apply(dp, 1, [HookPolicies(HOOK_TC_EG, "tc-egress", pol),
                  HookPolicies(HOOK_TC_IN, "tc-ingress", pol)])
    assert run(dp, "tc-egress", tcp4()).retval == TC_ACT_SHOT
    assert run(dp, "tc-ingress", tcp4()).retval == TC_NEXT


def test_ipv6_ip_pair_and_mptcp_subtype(dp):
    apply(dp, 1, [HookPolicies(HOOK_XDP, "xdp", [
        PolicySpec([StageRef("ip_pair", encode_ip_pair("fd00::/64", "fd00::2/128")),
                    StageRef("mptcp_subtype", 5)], [StageRef("drop")])])])
    mp_prio = (30, b"\x50")   # MPTCP kind 30, MP_PRIO subtype 5
    assert run(dp, "xdp", tcp6(options=[mp_prio])).retval == XDP_DROP
    assert run(dp, "xdp", tcp6(options=[(30, b"\x20\x00")])).retval == XDP_PASS
    assert run(dp, "xdp", tcp6()).retval == XDP_PASS


@pytest.mark.parametrize("kind,hook", [("tc-ingress", HOOK_TC_IN), ("tc-egress", HOOK_TC_EG)])
def test_tc_verdicts_decided_and_undecided(dp, kind, hook):
    """On TC only a terminal action decides; everything else is TCX_NEXT."""
    apply(dp, 1, [HookPolicies(hook, kind, [
        PolicySpec([StageRef("service", encode_service([7]))], [StageRef("count"), StageRef("pass")]),
        PolicySpec([StageRef("service", encode_service([9]))], [StageRef("drop")]),
        PolicySpec([StageRef("service", encode_service([80]))], [StageRef("count")]),
    ])])
    assert run(dp, kind, tcp4(dport=7)).retval == TC_ACT_OK       # pass: a decision
    assert run(dp, kind, tcp4(dport=9)).retval == TC_ACT_SHOT     # drop
    assert run(dp, kind, tcp4(dport=80)).retval == TC_NEXT        # chain ends, no verdict
    assert run(dp, kind, tcp4(dport=443)).retval == TC_NEXT       # no policy matched
    hs = dp.hook_stats(hook)
    assert hs["matched"] == 3 and hs["unmatched"] == 1


@pytest.mark.parametrize("kind,hook,undecided", [("xdp", HOOK_XDP, XDP_PASS),
                                                 ("tc-ingress", HOOK_TC_IN, TC_NEXT)])
def test_missed_tail_call_is_no_verdict(unfused, kind, hook, undecided):
    """A stage that cannot run decides nothing: on TC the next program still runs."""
    dp = unfused
    t = "xdp" if kind == "xdp" else "tc"
    hooks = [HookPolicies(hook, kind, [PolicySpec([], [StageRef("count"), StageRef("pass")])])]
    apply(dp, 1, hooks)
    progs = dp.maps[PROG_ARRAYS[t]]
    progs.delete(instance_key(dp, 1, t, "pass"))
    try:
        assert run(dp, kind, tcp4()).retval == undecided
        assert dp.hook_stats(hook)["missed_tail_calls"] == 1
    finally:
        apply(dp, 1, hooks)
