"""chain_compiler: pure Python, no kernel."""
from __future__ import annotations

import pytest

from emptcp import abi
from emptcp.chain.compiler import (HookPolicies, PolicySpec, StageRef, compile_generation,
                                   encode_ip_pair, encode_mptcp_subtype, encode_service,
                                   encode_set_recv_win, encode_tcp2tuple, encode_tcp_opt_add)

SLOTS = {("mptcp_subtype", "xdp"): 1, ("count", "xdp"): 2, ("mptcp_subtype", "tc"): 3,
         ("drop", "tc"): 4}


def test_tables_and_params():
    # policy 0: ip_pair(10.0.0.1/32, 10.0.1.0/24) OR mptcp_subtype 5 -> count 7
    # policy 1: service 80 (either) -> count
    t = compile_generation(2, [HookPolicies(3, "xdp", [
        PolicySpec([StageRef("ip_pair", encode_ip_pair("10.0.0.1/32", "10.0.1.0/24")),
                    StageRef("mptcp_subtype", 5, op="or")], [StageRef("count", 7)], uid=42),
        PolicySpec([StageRef("service", encode_service([80]))], [StageRef("count")])])], SLOTS,
        act_keys={(3, 0): abi.instance_key(9), (3, 1): abi.instance_key(10)})
    p = abi.Policy.unpack(t.policies[abi.policy_index(2, 3, 0)])
    assert p.selectors == [(0, 0), (1, abi.P_OR | 5)] and p.uid == 42
    assert (p.n_act, p.act_key) == (1, abi.INSTANCE_BASE + 9)
    assert not t.params
    # rules: 0 = ip_pair, 1 = mptcp_subtype (program), 2 = lport 80, 3 = rport 80
    used, n, port_table, _, all_, plugin, absent, rule_policy = abi.HOOK_RULES.unpack(
        t.hook_rules[abi.hook_rules_index(2, 3)])
    assert n == 4 and abi.RULES.unpack(all_)[0] == 0b1111
    assert abi.RULES.unpack(plugin)[0] == 0b0010
    assert list(rule_policy[:4]) == [0, 0, 1, 1]
    assert used == sum(1 << d for d in (3, 4, 5, 6))        # laddr raddr lport rport
    terms = t.rule_terms[abi.rule_index(2, 3, 1)]
    assert terms[2:4] == bytes([1, abi.P_OR | 5]) and terms[:2] == b"\0\0"
    # the two prefixes and the port keys lead to classes whose rows hold their rules
    def row(cls):
        return abi.RULES.unpack(t.rows[abi.row_index(2, cls)])[0]
    assert len(t.prefixes) == 2 and not t.keys
    # port 80 in this generation's first port table: a class in lport and in rport
    assert port_table == 2 * abi.PORT_TABLES_PER_GEN and t.port_tables == [port_table]
    assert list(t.ports) == [(port_table << 16) + 80]
    lclass, rclass = abi.PORT_CLASS.unpack(t.ports[(port_table << 16) + 80])
    # in the lport dimension, port 80 satisfies every rule; a port in no set all but rule 2
    assert row(lclass) == 0b1111 and row(rclass) == 0b1111 and lclass != rclass
    assert abi.RULES.unpack(absent[5 * 32:6 * 32])[0] == 0b1011
    local = abi.PREFIX_KEY.pack(32 + 32, 2, 3, 3, 4, bytes([10, 0, 0, 1]) + bytes(12))
    assert local in t.prefixes


def test_rules_per_hook_are_limited():
    many = [PolicySpec([StageRef("service", encode_service([p]))], [StageRef("count")])
            for p in range(1, 129)]             # mode either: 2 rules each, 256 in all
    keys = {(0, i): abi.instance_key(i) for i in range(128)}
    compile_generation(0, [HookPolicies(0, "xdp", many)], SLOTS, keys)
    many[-1].selectors.append(StageRef("mptcp_subtype", 5, op="or"))
    with pytest.raises(ValueError, match="policy 127 brings the hook to 257 rules"):
        compile_generation(0, [HookPolicies(0, "xdp", many)], SLOTS, keys)


@pytest.mark.parametrize("call,msg", [
    (lambda: encode_ip_pair("10.0.0.1/33"), "not an address"),
    (lambda: encode_ip_pair("10.0.0.1/32", "fd00::/8"), "different families"),
    (lambda: encode_service([]), "at least one"),
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
    ([HookPolicies(0, "xdp", [PolicySpec([StageRef("mine")], [])])], "no xdp program"),
    ([HookPolicies(0, "xdp", [PolicySpec([StageRef("service", 3)], [])])], "takes its entries"),
    ([HookPolicies(0, "xdp", [PolicySpec([], [StageRef("count", 64)])])], "out of range 0..63"),
    ([HookPolicies(0, "xdp", [PolicySpec([], [StageRef("count", b"x" * 65)])])], "at most 64"),
    ([HookPolicies(0, "xdp", [PolicySpec()])], "at least one"),
    ([HookPolicies(0, "xdp", [PolicySpec([StageRef("mptcp_subtype")] * 9, [])])], "at most 8"),
    ([HookPolicies(0, "xdp", [PolicySpec([StageRef("mptcp_subtype")] * 8, [StageRef("count")])] * 4)],
     "may run 33 stages"),
    ([HookPolicies(0, "bogus", [])], "unknown hook kind"),
    ([HookPolicies(0, "xdp", [PolicySpec([], [StageRef("count")])])], "no instance key"),
    ([HookPolicies(0, "xdp", [PolicySpec([StageRef("mptcp_subtype", op="xor")], [])])], "op must be"),
])
def test_compile_errors(hooks, msg):
    with pytest.raises(ValueError, match=msg):
        compile_generation(0, hooks, SLOTS)
