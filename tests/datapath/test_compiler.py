"""chain_compiler: pure Python, no kernel."""
from __future__ import annotations

import pytest

from emptcp import abi
from emptcp.chain.compiler import (HookPolicies, PolicySpec, StageRef, compile_generation,
                                   encode_ip_pair, encode_mptcp_subtype, encode_service,
                                   encode_set_recv_win, encode_tcp2tuple, encode_tcp_opt_add)

SLOTS = {("ip_pair", "xdp"): 1, ("count", "xdp"): 2, ("service", "tc"): 3, ("drop", "tc"): 4}


def test_tables_and_params():
    t = compile_generation(2, [HookPolicies(3, "xdp", [
        PolicySpec([StageRef("ip_pair", encode_ip_pair("10.0.0.1/32", "10.0.1.0/24")),
                    StageRef("ip_pair", 5, op="or")], [StageRef("count", 7)], uid=42)])], SLOTS,
        act_keys={(3, 0): abi.instance_key(9)})
    p = abi.Policy.unpack(t.policies[abi.policy_index(2, 3, 0)])
    assert p.selectors == [(1, abi.P_REF), (1, abi.P_OR | 5)]
    assert (p.n_act, p.act_key) == (1, abi.INSTANCE_BASE + 9)
    assert p.uid == 42
    assert abi.Policy.unpack(t.policies[abi.policy_index(2, 3, 1)]).selectors == []  # terminator
    blob = t.params[abi.param_key(2, 3, 0, abi.PHASE_SEL, 0)]
    assert len(blob) == 64 and blob[:3] == bytes([4, 32, 24])


@pytest.mark.parametrize("call,msg", [
    (lambda: encode_ip_pair("10.0.0.1/33"), "not an address"),
    (lambda: encode_ip_pair("10.0.0.1/32", "fd00::/8"), "different families"),
    (lambda: encode_service([]), "1..15"),
    (lambda: encode_service([(90, 80)]), "empty"),
    (lambda: encode_service([70000]), "not a port"),
    (lambda: encode_mptcp_subtype("nope"), "unknown subtype"),
    (lambda: encode_set_recv_win(70000), "0..65535"),
    (lambda: encode_tcp_opt_add(b"\x1e\x05\x00"), "does not match"),
    (lambda: encode_tcp2tuple(), "exactly one"),
])
def test_encoder_errors(call, msg):
    with pytest.raises(ValueError, match=msg):
        call()


@pytest.mark.parametrize("hooks,msg", [
    ([HookPolicies(0, "xdp", [PolicySpec([StageRef("service")], [])])], "no xdp program"),
    ([HookPolicies(0, "xdp", [PolicySpec([], [StageRef("count", 64)])])], "out of range 0..63"),
    ([HookPolicies(0, "xdp", [PolicySpec([], [StageRef("count", b"x" * 65)])])], "at most 64"),
    ([HookPolicies(0, "xdp", [PolicySpec()])], "at least one"),
    ([HookPolicies(0, "xdp", [PolicySpec([StageRef("ip_pair")] * 9, [])])], "at most 8"),
    ([HookPolicies(0, "xdp", [PolicySpec([StageRef("ip_pair")] * 8, [StageRef("count")])] * 4)],
     "may run 33 stages"),
    ([HookPolicies(0, "bogus", [])], "unknown hook kind"),
    ([HookPolicies(0, "xdp", [PolicySpec([], [StageRef("count")])])], "no instance key"),
    ([HookPolicies(0, "xdp", [PolicySpec([StageRef("ip_pair", op="xor")], [])])], "op must be"),
])
def test_compile_errors(hooks, msg):
    with pytest.raises(ValueError, match=msg):
        compile_generation(0, hooks, SLOTS)
