"""Turn one generation's policies into emptcp_policies / emptcp_params entries.

Pure Python, no kernel access::

    hooks = [HookPolicies(hook_id=0, kind="xdp", policies=[
        PolicySpec(selectors=[StageRef("ip_pair", encode_ip_pair("10.0.0.1/32", "10.0.1.0/24")),
                              StageRef("service", encode_service([(80, 80)]), op="or")],
                   actions=[StageRef("count"), StageRef("set_recv_win", encode_set_recv_win(5000))]),
    ])]
    tables = compile_generation(1, hooks, slots={("ip_pair", "xdp"): 1, ...},
                                act_keys={(0, 0): first_action_instance_key})
    tables.policies   # {index: 24-byte struct emptcp_policy}
    tables.params     # {key: 64-byte blob} (selectors)

A parameter is an ``int`` (immediate, 0..63) or ``bytes`` (at most 64, by
reference). Selectors find theirs in the context / emptcp_params; an action's
is a constant of its program instance (:func:`action_constants`,
emptcp.runtime.instances), which also knows its successor.  The encoders
of the built-in stages are at the bottom, in one place; they raise
ValueError with a message that names the stage and the bad value.
"""
from __future__ import annotations

import ipaddress
import struct
from dataclasses import dataclass, field
from typing import Iterable, Mapping, Union

from .. import abi

Param = Union[int, bytes, None]

__all__ = ["StageRef", "PolicySpec", "HookPolicies", "CompiledTables", "compile_generation",
           "hook_type", "worst_case_stages", "action_constants", "ENCODERS", "encode_ip_pair", "encode_tcp4tuple",
           "encode_tcp2tuple", "encode_service", "encode_mptcp_subtype", "encode_redirect",
           "encode_set_recv_win", "encode_tcp_opt_add", "encode_tcp_opt_del"]


@dataclass
class StageRef:
    name: str
    param: Param = None
    op: str = "and"          # selectors: how this one joins the result so far


@dataclass
class PolicySpec:
    selectors: list[StageRef] = field(default_factory=list)
    actions: list[StageRef] = field(default_factory=list)
    uid: int = 0


@dataclass
class HookPolicies:
    hook_id: int
    kind: str                # "xdp" | "tc-ingress" | "tc-egress"
    policies: list[PolicySpec] = field(default_factory=list)


@dataclass
class CompiledTables:
    gen: int
    policies: dict[int, bytes] = field(default_factory=dict)
    params: dict[int, bytes] = field(default_factory=dict)


def hook_type(kind: str) -> str:
    """The program flavour a hook kind runs: "xdp" or "tc"."""
    if kind not in abi.KINDS:
        raise ValueError(f"unknown hook kind {kind!r} (expected one of {', '.join(abi.KINDS)})")
    return "xdp" if kind == "xdp" else "tc"


def worst_case_stages(policies: Iterable[PolicySpec]) -> int:
    """Most stages one packet can run: all selectors of the policies before and
    including the one that matches, plus that policy's actions."""
    worst = seen = 0
    for p in policies:
        seen += len(p.selectors)
        worst = max(worst, seen + len(p.actions))
    return worst


def _stage_byte(where: str, ref: StageRef, selector: bool, first: bool) -> tuple[int, bytes | None]:
    op = ref.op.lower()
    if op not in ("and", "or"):
        raise ValueError(f"{where}: op must be 'and' or 'or', not {ref.op!r}")
    or_ = selector and op == "or" and not first
    p = ref.param
    if p is None:
        return abi.param_byte(0, or_=or_), None
    if isinstance(p, bool) or not isinstance(p, (int, bytes, bytearray)):
        raise ValueError(f"{where}: parameter must be an int (0..63) or bytes, not {type(p).__name__}")
    if isinstance(p, int):
        if not 0 <= p <= abi.P_IMM_MASK:
            raise ValueError(f"{where}: immediate parameter {p} out of range 0..{abi.P_IMM_MASK}"
                             " (use a by-reference blob)")
        return abi.param_byte(p, or_=or_), None
    if len(p) > abi.PARAM_SIZE:
        raise ValueError(f"{where}: parameter blob is {len(p)} bytes, at most {abi.PARAM_SIZE}")
    return abi.param_byte(0, ref=True, or_=or_), bytes(p).ljust(abi.PARAM_SIZE, b"\0")


def action_constants(where: str, ref: StageRef) -> abi.Instance:
    """The parameter of an action as its instance's constants (successor not set)."""
    pbyte, blob = _stage_byte(where, ref, False, False)
    if blob is not None:
        return abi.Instance(ref=True, blob=blob)
    return abi.Instance(imm=pbyte & abi.P_IMM_MASK)


def compile_generation(gen: int, hooks: Iterable[HookPolicies],
                       slots: Mapping[tuple[str, str], int],
                       act_keys: Mapping[tuple[int, int], int] | None = None) -> CompiledTables:
    """Compile every hook's policies for generation ``gen``.

    ``slots`` maps (stage name, "xdp"|"tc") to the prog-array slot (1..255)
    where that selector's program is installed in this generation; ``act_keys``
    maps (hook id, policy index) to the prog-array key of the instance of the
    policy's first action (emptcp.runtime.instances.plan_instances).
    """
    if not 0 <= gen < abi.MAX_GEN:
        raise ValueError(f"generation {gen} out of range 0..{abi.MAX_GEN - 1}")
    out = CompiledTables(gen)
    seen_hooks: set[int] = set()
    for h in hooks:
        if not 0 <= h.hook_id < abi.MAX_HOOKS:
            raise ValueError(f"hook id {h.hook_id} out of range 0..{abi.MAX_HOOKS - 1}")
        if h.hook_id in seen_hooks:
            raise ValueError(f"hook id {h.hook_id} appears twice")
        seen_hooks.add(h.hook_id)
        htype = hook_type(h.kind)
        if len(h.policies) > abi.MAX_POLICIES:
            raise ValueError(f"hook {h.hook_id}: {len(h.policies)} policies, at most {abi.MAX_POLICIES}")
        worst = worst_case_stages(h.policies)
        if worst > abi.MAX_TAIL_CALLS:
            raise ValueError(f"hook {h.hook_id} ({h.kind}): a packet may run {worst} stages "
                             f"(selectors of earlier policies + actions); the kernel allows "
                             f"{abi.MAX_TAIL_CALLS} after the entry's tail call")
        for pi, pol in enumerate(h.policies):
            if not pol.selectors and not pol.actions:
                raise ValueError(f"hook {h.hook_id} policy {pi}: needs at least one selector "
                                 "or action (an empty record ends the list)")
            stages: dict[str, list[tuple[int, int]]] = {"sel": [], "act": []}
            for phase, key, refs in ((abi.PHASE_SEL, "sel", pol.selectors),
                                     (abi.PHASE_ACT, "act", pol.actions)):
                if key == "act":   # instances: the parameters are their constants
                    if len(refs) > abi.MAX_STAGES:
                        raise ValueError(f"hook {h.hook_id} policy {pi}: {len(refs)} actions, "
                                         f"at most {abi.MAX_STAGES}")
                    for si, ref in enumerate(refs):
                        action_constants(f"hook {h.hook_id} policy {pi} act {si} ({ref.name})",
                                         ref)
                    continue
                if len(refs) > abi.MAX_STAGES:
                    raise ValueError(f"hook {h.hook_id} policy {pi}: {len(refs)} "
                                     f"{'selectors' if key == 'sel' else 'actions'}, "
                                     f"at most {abi.MAX_STAGES}")
                for si, ref in enumerate(refs):
                    where = f"hook {h.hook_id} policy {pi} {key} {si} ({ref.name})"
                    slot = slots.get((ref.name, htype))
                    if slot is None:
                        raise ValueError(f"{where}: no {htype} program installed for stage "
                                         f"{ref.name!r}")
                    if not 1 <= slot < abi.SLOTS_PER_GEN:
                        raise ValueError(f"{where}: slot {slot} out of range 1..255")
                    pbyte, blob = _stage_byte(where, ref, key == "sel", si == 0)
                    stages[key].append((slot, pbyte))
                    if blob is not None:
                        out.params[abi.param_key(gen, h.hook_id, pi, phase, si)] = blob
            act_key = 0
            if pol.actions:
                act_key = (act_keys or {}).get((h.hook_id, pi), 0)
                if not abi.INSTANCE_BASE <= act_key < abi.PROG_ARRAY_SIZE:
                    raise ValueError(f"hook {h.hook_id} policy {pi}: no instance key for its "
                                     f"first action ({pol.actions[0].name})")
            out.policies[abi.policy_index(gen, h.hook_id, pi)] = abi.Policy(
                stages["sel"], len(pol.actions), act_key, pol.uid).pack()
        # the terminator: an explicit empty record after the last policy
        if len(h.policies) < abi.MAX_POLICIES:
            out.policies[abi.policy_index(gen, h.hook_id, len(h.policies))] = abi.Policy().pack()
    return out


# ---- parameter encoders of the built-in stages ------------------------------

def _net(stage: str, what: str, text: str):
    try:
        return ipaddress.ip_network(text, strict=False)
    except ValueError as e:
        raise ValueError(f"{stage}: {what} {text!r} is not an address/prefix: {e}") from None


def _addr(stage: str, what: str, text: str):
    try:
        return ipaddress.ip_address(text)
    except ValueError as e:
        raise ValueError(f"{stage}: {what} {text!r} is not an address: {e}") from None


def _port(stage: str, what: str, p: int) -> int:
    if isinstance(p, bool) or not isinstance(p, int) or not 0 <= p <= 65535:
        raise ValueError(f"{stage}: {what} {p!r} is not a port (0..65535)")
    return p


def _packed(a) -> bytes:
    return a.packed.ljust(16, b"\0")


def encode_ip_pair(local: str = "0.0.0.0/0", remote: str = "0.0.0.0/0") -> bytes:
    """local/remote "addr/prefix" (IPv4 or IPv6, same family); prefix 0 = any."""
    lo, re_ = _net("ip_pair", "local", local), _net("ip_pair", "remote", remote)
    if lo.version != re_.version:
        raise ValueError(f"ip_pair: local {local!r} and remote {remote!r} are different families")
    return struct.pack("<BBBx16s16s", lo.version, lo.prefixlen, re_.prefixlen,
                       _packed(lo.network_address), _packed(re_.network_address))


def encode_tcp4tuple(local: str, local_port: int, remote: str, remote_port: int) -> bytes:
    la, ra = _addr("tcp4tuple", "local", local), _addr("tcp4tuple", "remote", remote)
    if la.version != ra.version:
        raise ValueError("tcp4tuple: local and remote addresses are different families")
    return struct.pack("!BBHH2x", la.version, 0, _port("tcp4tuple", "local_port", local_port),
                       _port("tcp4tuple", "remote_port", remote_port)) + _packed(la) + _packed(ra)


def encode_tcp2tuple(*, ports: tuple[int, int] | None = None,
                     addrs: tuple[str, str] | None = None) -> bytes:
    """Either ports=(local_port, remote_port) or addrs=(local, remote)."""
    if (ports is None) == (addrs is None):
        raise ValueError("tcp2tuple: give exactly one of ports=(local, remote) or addrs=(local, remote)")
    if ports is not None:
        lp, rp = (_port("tcp2tuple", w, p) for w, p in zip(("local port", "remote port"), ports))
        return struct.pack("!BBHH2x", 0, 1, lp, rp) + b"\0" * 32
    la, ra = _addr("tcp2tuple", "local", addrs[0]), _addr("tcp2tuple", "remote", addrs[1])
    if la.version != ra.version:
        raise ValueError("tcp2tuple: local and remote addresses are different families")
    return struct.pack("!BBHH2x", la.version, 2, 0, 0) + _packed(la) + _packed(ra)


def encode_service(ranges: Iterable, mode: str = "either") -> bytes:
    """Ports or (lo, hi) inclusive ranges, at most 15; mode "either" (source or
    destination port) or "local" (the local port only)."""
    modes = {"either": 0, "local": 1}
    if mode not in modes:
        raise ValueError(f"service: mode must be 'either' or 'local', not {mode!r}")
    rs = []
    for r in ranges:
        lo, hi = (r, r) if isinstance(r, int) else tuple(r)
        lo, hi = _port("service", "range start", lo), _port("service", "range end", hi)
        if lo > hi:
            raise ValueError(f"service: range {lo}-{hi} is empty")
        rs.append((lo, hi))
    if not 1 <= len(rs) <= 15:
        raise ValueError(f"service: needs 1..15 port ranges, got {len(rs)}")
    body = b"".join(struct.pack("<HH", lo, hi) for lo, hi in rs)
    return struct.pack("<BB2x", len(rs), modes[mode]) + body


MPTCP_SUBTYPES = abi.MPTCP_SUBTYPE_NUMBERS


def encode_mptcp_subtype(subtype: int | str) -> int:
    if isinstance(subtype, str):
        if subtype.lower() not in MPTCP_SUBTYPES:
            raise ValueError(f"mptcp_subtype: unknown subtype {subtype!r} "
                             f"(known: {', '.join(MPTCP_SUBTYPES)})")
        return MPTCP_SUBTYPES[subtype.lower()]
    if isinstance(subtype, bool) or not isinstance(subtype, int) or not 0 <= subtype <= 15:
        raise ValueError(f"mptcp_subtype: subtype {subtype!r} out of range 0..15")
    return subtype


def encode_redirect(ifindex: int) -> bytes:
    if isinstance(ifindex, bool) or not isinstance(ifindex, int) or not 0 < ifindex < 2**32:
        raise ValueError(f"redirect: ifindex {ifindex!r} must be a positive interface index")
    return struct.pack("<I", ifindex)


def encode_set_recv_win(window: int) -> int | bytes:
    if isinstance(window, bool) or not isinstance(window, int) or not 0 <= window <= 65535:
        raise ValueError(f"set_recv_win: window {window!r} out of range 0..65535")
    return window if window <= abi.P_IMM_MASK else struct.pack("<H", window)


def encode_tcp_opt_add(option: bytes) -> bytes:
    """The raw option, kind byte first (padded with NOPs when inserted)."""
    option = bytes(option)
    if not 1 <= len(option) <= 40:
        raise ValueError(f"tcp_opt_add: option is {len(option)} bytes, must be 1..40")
    if option[0] > 1 and (len(option) < 2 or option[1] != len(option)):
        raise ValueError(f"tcp_opt_add: option length byte {option[1] if len(option) > 1 else None}"
                         f" does not match its size {len(option)}")
    return bytes([len(option)]) + option


def encode_tcp_opt_del(kind: int = 30, subtype: int | str | None = None) -> int | bytes:
    """Strip options of ``kind`` (MPTCP: optionally only ``subtype``)."""
    if isinstance(kind, bool) or not isinstance(kind, int) or not 2 <= kind <= 255:
        raise ValueError(f"tcp_opt_del: kind {kind!r} out of range 2..255")
    sub = abi.SUBTYPE_ANY if subtype is None else encode_mptcp_subtype(subtype)
    if kind == 30 and subtype is not None:
        return sub
    return struct.pack("<BB", kind, sub)


ENCODERS = {
    "ip_pair": encode_ip_pair, "tcp4tuple": encode_tcp4tuple, "tcp2tuple": encode_tcp2tuple,
    "service": encode_service, "mptcp_subtype": encode_mptcp_subtype,
    "redirect": encode_redirect, "set_recv_win": encode_set_recv_win,
    "tcp_opt_add": encode_tcp_opt_add, "tcp_opt_del": encode_tcp_opt_del,
}
