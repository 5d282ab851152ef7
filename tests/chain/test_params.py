"""Stage parameter schemas (emptcp.chain.stages): types, ranges, choices, defaults,
and the encoded form resolve() hands to the data path. No root, no kernel."""
from __future__ import annotations

import struct

import pytest

from emptcp.chain.config import parse_text, resolve
from emptcp.chain.stages import REQUIRED, Param, StageSpec, validate_params
from emptcp.errors import ConfigError


@pytest.mark.parametrize("param,value,normalised", [
    (Param("b", "bool"), True, True),
    (Param("n", "int", min=0, max=10), 10, 10),
    (Param("n", "int"), -5, -5),
    (Param("p", "port"), 65535, 65535),
    (Param("ps", "ports"), [80, "8000-8080", "443"], [(80, 80), (8000, 8080), (443, 443)]),
    (Param("ps", "ports"), 22, [(22, 22)]),
    (Param("c", "cidr"), "10.1.2.3/8", "10.0.0.0/8"),
    (Param("c", "cidr"), "fd00::1/64", "fd00::/64"),
    (Param("i", "ip"), "10.0.0.1", "10.0.0.1"),
    (Param("i", "ip"), "FD00::0001", "fd00::1"),
    (Param("s", "str", choices=("a", "b")), "b", "b"),
    (Param("f", "iface"), "eth0", "eth0"),
    (Param("l", "list"), [1, "x"], [1, "x"]),
])
def test_param_accepts_and_normalises(param, value, normalised):
    assert param.check(value, "f.toml:3: policy[0].actions[0]") == normalised


@pytest.mark.parametrize("param,value,says", [
    (Param("b", "bool"), 1, "expected true or false"),
    (Param("n", "int"), True, "expected an integer"),
    (Param("n", "int"), "3", "expected an integer"),
    (Param("n", "int", min=0, max=10), 11, "11 is out of range [0, 10]"),
    (Param("n", "int", min=0, max=10), -1, "-1 is out of range [0, 10]"),
    (Param("p", "port"), 65536, "out of range [0, 65535]"),
    (Param("ps", "ports"), [], "empty port set"),
    (Param("ps", "ports"), ["90-80"], "is empty (write it low-high)"),
    (Param("ps", "ports"), ["a-b"], "is not 'lo-hi'"),
    (Param("ps", "ports"), [True], "is not a number"),
    (Param("ps", "ports"), [70000], "out of range [0, 65535]"),
    (Param("c", "cidr"), "10.0.0.0/33", "is not an IPv4/IPv6 address or prefix"),
    (Param("i", "ip"), "10.0.300.1", "is not an IPv4/IPv6 address"),
    (Param("s", "str"), "", "expected a non-empty string"),
    (Param("s", "str", choices=("a", "b")), "c", "is not one of ['a', 'b']"),
    (Param("l", "list"), "x", "expected a list"),
])
def test_param_rejects_with_location(param, value, says):
    with pytest.raises(ConfigError) as e:
        param.check(value, "f.toml:3: policy[0].actions[0]")
    assert e.value.where == f"f.toml:3: policy[0].actions[0].{param.name}"
    assert says in e.value.message


def test_param_type_must_be_known():
    with pytest.raises(ValueError, match="unknown type 'float'"):
        Param("x", "float")


SPEC = StageSpec("demo", "action", ("xdp",), "/x.o", {"xdp": "p"},
                 params=(Param("window", "int", min=0, max=65535, description="bytes"),
                         Param("backup", "bool", default=True)))


def test_validate_params_fills_defaults_and_names_problems():
    assert SPEC.params[0].default is REQUIRED and SPEC.defaults() == {"backup": True}
    assert validate_params(SPEC, {"window": 5}, "w") == {"window": 5, "backup": True}
    with pytest.raises(ConfigError, match=r"needs parameter 'window' \(bytes\)"):
        validate_params(SPEC, {}, "w")
    with pytest.raises(ConfigError, match=r"unknown parameter\(s\) colour, size .*"
                                          r"\(parameters: window, backup\)"):
        validate_params(SPEC, {"window": 1, "colour": 1, "size": 2}, "w")


def test_stage_spec_rejects_bad_kind_and_hooks():
    with pytest.raises(ValueError, match="kind must be"):
        StageSpec("x", "filter", ("xdp",), "/x.o", {})
    with pytest.raises(ValueError, match="unknown hooks"):
        StageSpec("x", "action", ("xdp", "lwt"), "/x.o", {})


# ---- what resolve() encodes for the built-in stages, decoded independently ------------
def _encoded(stage_toml: str, kind: str = "actions", htype: str = "xdp"):
    from emptcp.plugins.manager import PluginManager
    extra = "" if kind == "actions" else 'actions = [ { use = "count" } ]\n'
    text = (f'[hooks.h]\ninterface = "lo"\ntype = "{htype}"\n[services]\nweb = [80, "8000-8001"]\n'
            f'[[policy]]\nname = "p"\nhook = "h"\n{kind} = [ {stage_toml} ]\n{extra}')
    cfg, loc = parse_text(text, "enc.toml")
    r = resolve(cfg, PluginManager().stages(), loc)
    pol = r.hooks["h"].policies[0]
    return (pol.selectors if kind == "selectors" else pol.actions)[0].encoded


def test_set_recv_win_immediate_and_by_reference():
    assert _encoded('{ use = "set_recv_win", window = 63 }') == 63
    assert _encoded('{ use = "set_recv_win", window = 64 }') == struct.pack("<H", 64)
    assert _encoded('{ use = "set_recv_win", window = 65535 }') == b"\xff\xff"


def test_ip_pair_encoding():
    p = _encoded('{ use = "ip_pair", local_addr = "10.1.2.3/24", remote_addr = "10.9.0.0/16" }',
                 "selectors")
    (alt,) = p.alternatives
    assert dict(alt) == {"laddr": {(4, 24, bytes([10, 1, 2, 0]) + bytes(12))},
                         "raddr": {(4, 16, bytes([10, 9, 0, 0]) + bytes(12))}}
    p6 = _encoded('{ use = "ip_pair", remote_addr = "fd00:1::/32" }', "selectors")
    (alt,) = p6.alternatives
    assert dict(alt) == {"laddr": {(6, 0, bytes(16))},     # missing side: any IPv6 address
                         "raddr": {(6, 32, bytes.fromhex("fd000001") + bytes(12))}}


def test_service_encoding_uses_named_service():
    p = _encoded('{ use = "service", ports = "web", mode = "local" }', "selectors")
    assert p.alternatives == ((("lport", frozenset({80, 8000, 8001})),),)   # local: no rport


def test_tcp_opt_del_and_mptcp_subtype_encoding():
    assert _encoded('{ use = "tcp_opt_del", kind = 30, subtype = 3 }') == 3
    assert _encoded('{ use = "mptcp_subtype", subtype = 5 }', "selectors") == 5
