"""Turn one generation's policies into the tables a packet reads.

Pure Python, no kernel access::

    hooks = [HookPolicies(hook_id=0, kind="xdp", policies=[
        PolicySpec(selectors=[StageRef("ip_pair", encode_ip_pair("10.0.0.1/32", "10.0.1.0/24")),
                              StageRef("service", encode_service([(80, 80)]), op="or")],
                   actions=[StageRef("count"), StageRef("set_recv_win", encode_set_recv_win(5000))]),
    ])]
    tables = compile_generation(1, hooks, slots={("mptcp_subtype", "xdp"): 1, ...},
                                act_keys={(0, 0): first_action_instance_key})
    tables.policies   # {index: 24-byte struct emptcp_policy}: program selectors, first action
    tables.params     # {key: 64-byte blob} (program selectors)
    tables.keys, tables.prefixes, tables.ports, tables.rows, tables.hook_rules,
    tables.rule_terms # classification of the built-in selectors (docs/datapath-v2.md)

A built-in selector (:data:`emptcp.chain.sets.CLASSIFIED`) takes a
:class:`~emptcp.chain.sets.SetParam`: its entries become keys whose *class* (the
sets that contain them) selects a *row* of the hook's *rules* (the DNF clauses of
its policies, :mod:`emptcp.chain.classify`). Any other parameter is an ``int``
(immediate, 0..63) or ``bytes`` (at most 64, by reference). Program selectors find
theirs in the context / emptcp_params; an action's is a constant of its program
instance (:func:`action_constants`, emptcp.runtime.instances), which also knows its
successor.  The encoders
of the built-in stages are at the bottom, in one place; they raise
ValueError with a message that names the stage and the bad value.
"""
from __future__ import annotations

import struct
from dataclasses import dataclass, field
from typing import Iterable, Mapping, Union

from .. import abi
from . import classify
from .sets import (CLASSIFIED, DIM_NUMBERS, PREFIX_DIMS, SetParam, ip_pair_set,
                   prefix_contains, service_set, tcp2tuple_set, tcp4tuple_set)

Param = Union[int, bytes, SetParam, None]

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
    keys: dict[bytes, bytes] = field(default_factory=dict)        # emptcp_keys
    prefixes: dict[bytes, bytes] = field(default_factory=dict)    # emptcp_prefixes
    rows: dict[int, bytes] = field(default_factory=dict)          # emptcp_rows
    hook_rules: dict[int, bytes] = field(default_factory=dict)    # emptcp_hook_rules
    rule_terms: dict[int, bytes] = field(default_factory=dict)    # emptcp_rule_terms
    ports: dict[int, bytes] = field(default_factory=dict)         # emptcp_ports
    port_tables: list[int] = field(default_factory=list)          # tables of emptcp_ports used
    #: hook id -> what run-time entries need to extend this generation's sets
    #: (:mod:`emptcp.runtime.flows`): owners' set ids, rules' terms, classes, port table
    classify: dict[int, dict] = field(default_factory=dict)


def hook_type(kind: str) -> str:
    """The program flavour a hook kind runs: "xdp" or "tc"."""
    if kind not in abi.KINDS:
        raise ValueError(f"unknown hook kind {kind!r} (expected one of {', '.join(abi.KINDS)})")
    return "xdp" if kind == "xdp" else "tc"


def worst_case_stages(policies: Iterable[PolicySpec]) -> int:
    """Most tail calls one packet can make after the entry: the program selectors
    of every candidate rule tried before the winner (each may fail on its last
    one), the winner's, then its policy's actions. Built-in selectors cost none:
    the entry classifies by them."""
    pols = list(policies)
    worst = seen = 0
    for rule in classify.rules_of([_shape(p) for p in pols]):
        seen += sum(1 for t in rule.terms if t.dim == classify.PLUGIN)
        worst = max(worst, seen + len(pols[rule.policy].actions))
    return worst


def _shape(p: PolicySpec) -> classify.Policy:
    """A policy's selectors as classify sees them, every set a distinct id (enough to
    count rules and program-selector terms)."""
    sels = []
    for si, ref in enumerate(p.selectors):
        if isinstance(ref.param, SetParam):
            terms = tuple(tuple(classify.Term(d, si) for d, _ in alt)
                          for alt in ref.param.alternatives)
        else:
            terms = ((classify.Term(classify.PLUGIN, si),),)
        sels.append(classify.Selector(terms, ref.op.lower() if si else "and"))
    return classify.Policy(tuple(sels))


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
    where that program selector is installed in this generation (built-in selectors
    need none: the entry classifies by them); ``act_keys`` maps (hook id, policy
    index) to the prog-array key of the instance of the policy's first action
    (emptcp.runtime.instances.plan_instances).
    """
    if not 0 <= gen < abi.MAX_GEN:
        raise ValueError(f"generation {gen} out of range 0..{abi.MAX_GEN - 1}")
    out = CompiledTables(gen)
    seen_hooks: set[int] = set()
    classes = _Classes(gen)
    for h in hooks:
        if not 0 <= h.hook_id < abi.MAX_HOOKS:
            raise ValueError(f"hook id {h.hook_id} out of range 0..{abi.MAX_HOOKS - 1}")
        if h.hook_id in seen_hooks:
            raise ValueError(f"hook id {h.hook_id} appears twice")
        seen_hooks.add(h.hook_id)
        htype = hook_type(h.kind)
        if len(h.policies) > abi.MAX_POLICIES:
            raise ValueError(f"hook {h.hook_id}: {len(h.policies)} policies, at most {abi.MAX_POLICIES}")
        if not h.policies:
            continue
        try:
            worst = worst_case_stages(h.policies)
        except ValueError as e:        # more rules than a hook holds
            raise ValueError(f"hook {h.hook_id} ({h.kind}): {e}") from None
        if worst > abi.MAX_TAIL_CALLS:
            raise ValueError(f"hook {h.hook_id} ({h.kind}): a packet may run {worst} stages "
                             f"(program selectors of the rules tried + actions); the kernel "
                             f"allows {abi.MAX_TAIL_CALLS} after the entry's tail call")
        sets = _HookSets()
        shapes: list[classify.Policy] = []
        terms: dict[tuple[int, int], tuple[int, int]] = {}   # (policy, selector) -> stage
        for pi, pol in enumerate(h.policies):
            if not pol.selectors and not pol.actions:
                raise ValueError(f"hook {h.hook_id} policy {pi}: needs at least one selector "
                                 "or action")
            stages: dict[str, list[tuple[int, int]]] = {"sel": [], "act": []}
            sels: list[classify.Selector] = []
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
                    op = ref.op.lower()
                    if op not in ("and", "or"):
                        raise ValueError(f"{where}: op must be 'and' or 'or', not {ref.op!r}")
                    if key == "sel" and isinstance(ref.param, SetParam):
                        sels.append(classify.Selector(tuple(
                            tuple(classify.Term(d, sets.intern(d, e, (pi, si))) for d, e in alt)
                            for alt in ref.param.alternatives), op if si else "and"))
                        stages[key].append((0, 0))
                        continue
                    if key == "sel" and ref.name in CLASSIFIED:
                        raise ValueError(f"{where}: a built-in selector takes its entries "
                                         f"(emptcp.chain.sets), not {type(ref.param).__name__}")
                    slot = slots.get((ref.name, htype))
                    if slot is None:
                        raise ValueError(f"{where}: no {htype} program installed for stage "
                                         f"{ref.name!r}")
                    if not 1 <= slot < abi.SLOTS_PER_GEN:
                        raise ValueError(f"{where}: slot {slot} out of range 1..255")
                    pbyte, blob = _stage_byte(where, ref, key == "sel", si == 0)
                    stages[key].append((slot, pbyte))
                    if key == "sel":
                        terms[(pi, si)] = (slot, pbyte)
                        sels.append(classify.Selector(
                            ((classify.Term(classify.PLUGIN, si),),), op if si else "and"))
                    if blob is not None:
                        out.params[abi.param_key(gen, h.hook_id, pi, phase, si)] = blob
            shapes.append(classify.Policy(tuple(sels)))
            act_key = 0
            if pol.actions:
                act_key = (act_keys or {}).get((h.hook_id, pi), 0)
                if not abi.INSTANCE_BASE <= act_key < abi.PROG_ARRAY_SIZE:
                    raise ValueError(f"hook {h.hook_id} policy {pi}: no instance key for its "
                                     f"first action ({pol.actions[0].name})")
            out.policies[abi.policy_index(gen, h.hook_id, pi)] = abi.Policy(
                stages["sel"], len(pol.actions), act_key, pol.uid).pack()
        try:
            tables = classify.build_tables(shapes)
        except ValueError as e:
            raise ValueError(f"hook {h.hook_id} ({h.kind}): {e}") from None
        _write_rules(out, gen, h.hook_id, tables, terms, sets, classes)
    return out


class _HookSets:
    """The distinct sets of one hook, per dimension: (dim, entries) -> set id."""

    def __init__(self) -> None:
        self.ids: dict[tuple[str, frozenset], int] = {}
        #: (policy, selector) -> {dim: set id}: whose entries a set holds (run-time entries)
        self.owners: dict[tuple[int, int], dict[str, int]] = {}

    def intern(self, dim: str, entries: frozenset, owner: tuple[int, int]) -> int:
        sid = self.ids.setdefault((dim, entries), len(self.ids))
        self.owners.setdefault(owner, {})[dim] = sid
        return sid

    def of(self, dim: str) -> list[tuple[int, frozenset]]:
        return [(i, e) for (d, e), i in self.ids.items() if d == dim]


class _Classes:
    """Class ids of one generation: (hook, dim, sets) -> 1..MAX_CLASSES-1."""

    def __init__(self, gen: int) -> None:
        self.gen = gen
        self.ids: dict[tuple[int, str, frozenset[int]], int] = {}

    def intern(self, hook: int, dim: str, sets: frozenset[int]) -> tuple[int, bool]:
        key = (hook, dim, sets)
        if key in self.ids:
            return self.ids[key], False
        if len(self.ids) + 1 >= abi.MAX_CLASSES:
            raise ValueError(f"more than {abi.MAX_CLASSES - 1} distinct key classes in one "
                             "generation (combinations of sets that share keys)")
        self.ids[key] = len(self.ids) + 1
        return self.ids[key], True


def _key_classes(dim: str, sets: list[tuple[int, frozenset]]) -> dict:
    """Every key (or stored prefix) of ``dim`` -> the set ids it belongs to."""
    member: dict = {}
    if dim in PREFIX_DIMS:
        prefixes = {p for _, e in sets for p in e}
        for p in prefixes:
            member[p] = frozenset(sid for sid, e in sets
                                  if any(prefix_contains(q, p) for q in e))
        return member
    for sid, e in sets:
        for k in e:
            member.setdefault(k, set()).add(sid)
    return {k: frozenset(v) for k, v in member.items()}


#: struct emptcp_key with the ports as numbers: every field but the ports is bytes, so
#: network order for the whole struct gives network-order ports and the same layout
_KEY_NET = struct.Struct("!BBBBHH16s16s")
_Z16 = bytes(16)


def _pack_key(gen: int, hook: int, dim: str, k) -> bytes:
    if dim == "flow":
        fam, la, lp, ra, rp = k
        return _KEY_NET.pack(gen, hook, 0, fam, lp, rp, la, ra)
    if dim == "ports":
        return _KEY_NET.pack(gen, hook, 1, 0, k[0], k[1], _Z16, _Z16)
    if dim == "addrs":
        fam, la, ra = k
        return _KEY_NET.pack(gen, hook, 2, fam, 0, 0, la, ra)
    fam, plen, addr = k                                   # laddr / raddr
    return abi.PREFIX_KEY.pack(abi.PREFIX_HDR_BITS + plen, gen, hook, DIM_NUMBERS[dim], fam, addr)


def _write_rules(out: CompiledTables, gen: int, hook: int, tables: classify.Tables,
                 terms: Mapping[tuple[int, int], tuple[int, int]], sets: _HookSets,
                 classes: _Classes) -> None:
    """The classification tables of one hook: keys -> classes -> rows, the hook's
    rule header, and the program selectors of each rule that has some."""
    port_table = 0
    if {"lport", "rport"} & set(tables.used):
        if len(out.port_tables) >= abi.PORT_TABLES_PER_GEN:
            raise ValueError(f"hook {hook}: more than {abi.PORT_TABLES_PER_GEN} hooks use "
                             "port selectors (service) in one configuration")
        port_table = gen * abi.PORT_TABLES_PER_GEN + len(out.port_tables)
        out.port_tables.append(port_table)
    port_classes: dict[int, list[int]] = {}
    for dim in tables.used:
        for k, member in _key_classes(dim, sets.of(dim)).items():
            cls, new = classes.intern(hook, dim, member)
            if new:
                out.rows[abi.row_index(gen, cls)] = abi.pack_rules(tables.row(dim, member))
            if dim in ("lport", "rport"):
                port_classes.setdefault(k, [0, 0])[dim == "rport"] = cls
            elif dim in PREFIX_DIMS:
                out.prefixes[_pack_key(gen, hook, dim, k)] = abi.CLASS.pack(cls)
            else:
                out.keys[_pack_key(gen, hook, dim, k)] = abi.CLASS.pack(cls)
    for port, (lc, rc) in port_classes.items():
        out.ports[(port_table << 16) + port] = abi.PORT_CLASS.pack(lc, rc)
    out.classify[hook] = {
        "owners": {f"{pi}/{si}": dims for (pi, si), dims in sets.owners.items()},
        "rules": [{d: sorted(t.set_id for t in r.terms if t.dim == d)
                   for d in {t.dim for t in r.terms} if d != classify.PLUGIN}
                  for r in tables.rules],
        "classes": [[c, d, sorted(m)] for (h, d, m), c in classes.ids.items() if h == hook],
        "port_table": port_table}
    n = len(tables.rules)
    plugin = 0
    rule_policy = bytearray(abi.MAX_RULES)
    for r, rule in enumerate(tables.rules):
        rule_policy[r] = rule.policy
        positions = sorted(t.set_id for t in rule.terms if t.dim == classify.PLUGIN)
        if positions:
            plugin |= 1 << r
            sel = bytearray(2 * abi.MAX_STAGES)
            for si in positions:
                sel[2 * si:2 * si + 2] = bytes(terms[(rule.policy, si)])
            out.rule_terms[abi.rule_index(gen, hook, r)] = abi.RULE_TERMS.pack(bytes(sel))
    used = sum(1 << DIM_NUMBERS[d] for d in tables.used if d in DIM_NUMBERS)
    absent = b"".join(abi.pack_rules(tables.absent[d]) if d in tables.used
                      else abi.pack_rules((1 << n) - 1) for d in DIM_NUMBERS)
    out.hook_rules[abi.hook_rules_index(gen, hook)] = abi.HOOK_RULES.pack(
        used, n, port_table, 0, abi.pack_rules((1 << n) - 1), abi.pack_rules(plugin), absent, bytes(rule_policy))


# ---- parameter encoders of the built-in stages ------------------------------

def encode_ip_pair(local: str | list[str] | None = "0.0.0.0/0",
                   remote: str | list[str] | None = "0.0.0.0/0") -> SetParam:
    """local/remote "addr/prefix" (or lists of them, IPv4 and/or IPv6); prefix 0 = any."""
    return ip_pair_set(local, remote)


def encode_tcp4tuple(local: str, local_port: int, remote: str, remote_port: int) -> SetParam:
    return tcp4tuple_set([(local, local_port, remote, remote_port)])


def encode_tcp2tuple(*, ports: tuple[int, int] | None = None,
                     addrs: tuple[str, str] | None = None) -> SetParam:
    """Either ports=(local_port, remote_port) or addrs=(local, remote)."""
    if (ports is None) == (addrs is None):
        raise ValueError("tcp2tuple: give exactly one of ports=(local, remote) or addrs=(local, remote)")
    return (tcp2tuple_set(ports=[ports]) if ports is not None
            else tcp2tuple_set(addrs=[addrs]))  # type: ignore[list-item]


def encode_service(ranges: Iterable, mode: str = "either") -> SetParam:
    """Ports or (lo, hi) inclusive ranges; mode "either" (source or destination port)
    or "local" (the local port only)."""
    return service_set(ranges, mode)


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
