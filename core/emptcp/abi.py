"""The Python mirror of ``bpf/common/emptcp_abi.h`` (+ ``emptcp_params.h``).

This is the single place Python knows the chain context and table layouts.
``tests/datapath/test_abi.py`` checks every size and offset here against the
BTF of a compiled object, so the two cannot drift silently.  See docs/abi.md.
"""
from __future__ import annotations

import struct
from dataclasses import dataclass, field

ABI_VERSION = 2

MAX_GEN = 4
MAX_HOOKS = 32
MAX_POLICIES = 128
MAX_STAGES = 8
SLOTS_PER_GEN = 256
#: action program instances live in the prog arrays after the generations' slots
INSTANCE_BASE = MAX_GEN * SLOTS_PER_GEN
MAX_INSTANCES = 1024         # per program type
PROG_ARRAY_SIZE = INSTANCE_BASE + MAX_INSTANCES
#: the .rodata variable (struct emptcp_instance) an action instance is loaded with
INSTANCE_VAR = "emptcp_inst"
FUSED_VAR = "emptcp_fused"     # .rodata of fused.bpf.c (struct emptcp_fused)
# operations of a fused instance (EMPTCP_OP_*)
OP_COUNT, OP_SET_RECV_WIN, OP_DROP, OP_PASS, OP_REDIRECT = 1, 2, 3, 4, 5
PARAM_SIZE = 64
MAX_PARAMS = 4096
MAX_TAIL_CALLS = 32          # stages per packet (selectors evaluated + actions)
SCRATCH_SIZE = 512
#: stage-counter rows and parameter keys per policy: two phases of MAX_STAGES
STAGES_PER_POLICY = 2 * MAX_STAGES
EVENTS_BYTES = 256 * 1024    # emptcp_events ring buffer

# classification of built-in selectors (docs/datapath-v2.md)
MAX_RULES = 256              # per hook and generation
RULE_WORDS = MAX_RULES // 64
MAX_CLASSES = 16384          # per generation; class 0 = "no class"
MAX_KEYS = 1 << 21           # exact-match keys, all hooks and generations together
MAX_PREFIXES = 65536         # prefix keys, all generations together
NUM_DIMS = 7
PREFIX_HDR_BITS = 32         # gen, hook, dim, family before the address in a prefix key
PORT_TABLES_PER_GEN = 8      # hooks per generation with port selectors (emptcp_ports)
HOOK_SLOTS = 4096            # emptcp_hook_slots: ifindex & (HOOK_SLOTS - 1)

#: limits a configuration is checked against before anything touches the kernel
LIMITS = {"stages": MAX_STAGES, "policies_per_hook": MAX_POLICIES, "hooks": MAX_HOOKS,
          "tail_calls": MAX_TAIL_CALLS, "rules_per_hook": MAX_RULES}

KIND_XDP, KIND_TC_INGRESS, KIND_TC_EGRESS = 0, 1, 2
KINDS = {"xdp": KIND_XDP, "tc-ingress": KIND_TC_INGRESS, "tc-egress": KIND_TC_EGRESS}
PHASE_SEL, PHASE_ACT = 0, 1
#: hook kind -> the entry program attached there (bpf/common/entry.bpf.c)
ENTRY_PROGRAMS = {"xdp": "emptcp_xdp_entry", "tc-ingress": "emptcp_tc_ingress_entry",
                  "tc-egress": "emptcp_tc_egress_entry"}

# context byte 0 / byte 1 / param byte
B0_ABI_SHIFT, B0_GEN_SHIFT, B0_GEN_MASK, B0_PHASE, B0_ACC = 4, 2, 0x0C, 0x02, 0x01
B1_HOOK_MASK, B1_KIND_SHIFT, B1_KIND_MASK = 0x1F, 5, 0x60
P_REF, P_OR, P_IMM_MASK = 0x80, 0x40, 0x3F

HS_FIELDS = ("packets", "matched", "unmatched", "missed_tail_calls", "errors")
SS_FIELDS = ("packets", "bytes", "missed_tail_calls")

EV_ADD_SUBFLOW, EV_MPTCP_OPT, EV_LOG = 1, 2, 3
EVENT_TYPES = {EV_ADD_SUBFLOW: "add_subflow", EV_MPTCP_OPT: "mptcp_opt", EV_LOG: "log"}
KIND_NAMES = {v: k for k, v in KINDS.items()}

#: MPTCP option subtypes (RFC 8684 section 3): number -> name, and the lower-case
#: names the configuration accepts (``mptcp_subtype``, ``tcp_opt_del``)
MPTCP_SUBTYPES = {0: "MP_CAPABLE", 1: "MP_JOIN", 2: "DSS", 3: "ADD_ADDR", 4: "REMOVE_ADDR",
                  5: "MP_PRIO", 6: "MP_FAIL", 7: "MP_FASTCLOSE", 8: "MP_TCPRST"}
MPTCP_SUBTYPE_NUMBERS = {"mp_capable": 0, "mp_join": 1, "dss": 2, "add_addr": 3,
                         "rm_addr": 4, "remove_addr": 4, "mp_prio": 5, "mp_fail": 6,
                         "mp_fastclose": 7, "mp_tcprst": 8}
SUBTYPE_ANY = 0xFF           # EMPTCP_SUBTYPE_ANY: every subtype

# name -> (struct format, size) of every C struct Python reads or writes
CTX = struct.Struct("<BBBB16s")                   # struct emptcp_ctx
STATE = struct.Struct("<II")                      # struct emptcp_state
HOOK_KEY = struct.Struct("<II")                   # struct emptcp_hook_key
HOOK_VAL = struct.Struct("<I")                    # struct emptcp_hook_val
POLICY = struct.Struct("<BBH8s8sI")               # struct emptcp_policy
INSTANCE = struct.Struct("<IBB2x64s")             # struct emptcp_instance
FUSED = struct.Struct("<IB8s3x8I")                # struct emptcp_fused
STAGE_STAT = struct.Struct("<QQQ")                # struct emptcp_stage_stat
HOOK_STAT = struct.Struct("<QQQQQ")               # struct emptcp_hook_stat
RULES = struct.Struct(f"<{RULE_WORDS}Q")          # struct emptcp_rules
KEY = struct.Struct("<BBBB2s2s16s16s")            # struct emptcp_key (ports: network order)
PREFIX_KEY = struct.Struct("<IBBBB16s")           # struct emptcp_prefix_key
HOOK_SLOT = struct.Struct("<I4s")                 # struct emptcp_hook_slot
PORT_CLASS = struct.Struct("<HH")                 # struct emptcp_port_class
HOOK_RULES = struct.Struct(f"<IIII{RULES.size}s{RULES.size}s{NUM_DIMS * RULES.size}s"
                           f"{MAX_RULES}s")       # struct emptcp_hook_rules
RULE_TERMS = struct.Struct("<16s")                # struct emptcp_rule_terms
CLS_STATE = struct.Struct(f"<{RULES.size}sIBB2x")   # struct emptcp_cls_state
CLASS = struct.Struct("<I")                       # value of emptcp_keys / emptcp_prefixes
EVENT_HDR = struct.Struct("<IIHBBI")              # struct emptcp_event_hdr
EV_TUPLE = struct.Struct("<BB2s2sBB16s16s")       # struct emptcp_ev_tuple (ports: network order)
EV_OPT_TAIL = struct.Struct("<BB2x40s")           # struct emptcp_ev_mptcp_opt after the tuple
EV_LOG_VALUES = struct.Struct("<4Q")              # struct emptcp_ev_log

# C struct name -> {member: offset} and size, as the C compiler must lay them out
LAYOUT: dict[str, tuple[int, dict[str, int]]] = {
    "emptcp_ctx": (20, {"b0": 0, "hook": 1, "policy": 2, "cur": 3, "stages": 4}),
    "emptcp_stage": (2, {"slot": 0, "param": 1}),
    "emptcp_state": (8, {"active_gen": 0, "abi_version": 4}),
    "emptcp_hook_key": (8, {"ifindex": 0, "kind": 4}),
    "emptcp_hook_val": (4, {"hook_id": 0}),
    "emptcp_policy": (24, {"n_sel": 0, "n_act": 1, "policy_uid": 2, "sel_slot": 4,
                           "sel_param": 12, "act_key": 20}),
    "emptcp_instance": (72, {"next_key": 0, "ref": 4, "imm": 5, "blob": 8}),
    "emptcp_fused": (48, {"next_key": 0, "n": 4, "ops": 5, "args": 16}),
    "emptcp_param": (64, {"data": 0}),
    "emptcp_stage_stat": (24, {"packets": 0, "bytes": 8, "missed_tail_calls": 16}),
    "emptcp_hook_stat": (40, {"packets": 0, "matched": 8, "unmatched": 16,
                              "missed_tail_calls": 24, "errors": 32}),
    "emptcp_rules": (32, {"w": 0}),
    "emptcp_key": (40, {"gen": 0, "hook": 1, "dim": 2, "family": 3, "lport": 4, "rport": 6,
                        "laddr": 8, "raddr": 24}),
    "emptcp_prefix_key": (24, {"prefixlen": 0, "gen": 4, "hook": 5, "dim": 6, "family": 7,
                               "addr": 8}),
    "emptcp_hook_rules": (560, {"used": 0, "n_rules": 4, "port_table": 8, "all": 16,
                                "plugin": 48, "absent": 80, "rule_policy": 304}),
    "emptcp_hook_slot": (8, {"ifindex": 0, "hook": 4}),
    "emptcp_port_class": (4, {"lclass": 0, "rclass": 2}),
    "emptcp_rule_terms": (16, {"sel": 0}),
    "emptcp_cls_state": (40, {"cand": 0, "rule": 32, "gen": 36, "hook": 37}),
    "emptcp_event_hdr": (16, {"type": 0, "hook_id": 4, "policy": 8, "stage": 10,
                              "phase": 11, "len": 12}),
    "emptcp_ev_tuple": (40, {"family": 0, "proto": 1, "sport": 2, "dport": 4, "kind": 6,
                             "saddr": 8, "daddr": 24}),
    "emptcp_ev_mptcp_opt": (84, {"tuple": 0, "subtype": 40, "len": 41, "opt": 44}),
    "emptcp_p_ip_pair": (36, {"family": 0, "local_plen": 1, "remote_plen": 2,
                              "local": 4, "remote": 20}),
    "emptcp_p_tuple": (40, {"family": 0, "mode": 1, "local_port": 2, "remote_port": 4,
                            "local": 8, "remote": 24}),
    "emptcp_p_service": (64, {"n": 0, "mode": 1, "r": 4}),
    "emptcp_p_redirect": (4, {"ifindex": 0}),
    "emptcp_p_window": (2, {"window": 0}),
    "emptcp_p_opt_add": (41, {"len": 0, "bytes": 1}),
    "emptcp_p_opt_del": (2, {"kind": 0, "subtype": 1}),
}

# map name -> (type name, key size, value size, max_entries)
MAPS = {
    "emptcp_xdp_progs": ("prog_array", 4, 4, PROG_ARRAY_SIZE),
    "emptcp_tc_progs": ("prog_array", 4, 4, PROG_ARRAY_SIZE),
    "emptcp_state": ("array", 4, STATE.size, 1),
    "emptcp_hooks": ("hash", HOOK_KEY.size, HOOK_VAL.size, MAX_HOOKS),
    "emptcp_policies": ("array", 4, POLICY.size, MAX_GEN * MAX_HOOKS * MAX_POLICIES),
    "emptcp_params": ("hash", 4, PARAM_SIZE, MAX_PARAMS),
    "emptcp_stage_stats": ("percpu_array", 4, STAGE_STAT.size,
                           MAX_HOOKS * MAX_POLICIES * STAGES_PER_POLICY),
    "emptcp_hook_stats": ("percpu_array", 4, HOOK_STAT.size, MAX_HOOKS),
    "emptcp_events": ("ringbuf", 0, 0, EVENTS_BYTES),
    "emptcp_scratch": ("percpu_array", 4, SCRATCH_SIZE, 1),
    "emptcp_keys": ("hash", KEY.size, 4, MAX_KEYS),
    "emptcp_prefixes": ("lpm_trie", PREFIX_KEY.size, 4, MAX_PREFIXES),
    "emptcp_ports": ("array", 4, PORT_CLASS.size, MAX_GEN * PORT_TABLES_PER_GEN * 65536),
    "emptcp_hook_slots": ("array", 4, HOOK_SLOT.size, HOOK_SLOTS),
    "emptcp_rows": ("array", 4, RULES.size, MAX_GEN * MAX_CLASSES),
    "emptcp_hook_rules": ("array", 4, HOOK_RULES.size, MAX_GEN * MAX_HOOKS),
    "emptcp_rule_terms": ("array", 4, RULE_TERMS.size, MAX_GEN * MAX_HOOKS * MAX_RULES),
    "emptcp_cls_state": ("percpu_array", 4, CLS_STATE.size, 1),
}
SHARED_MAPS = tuple(MAPS)


# ---- indices (same formulas as the EMPTCP_*_IDX macros) ----------------------

def policy_index(gen: int, hook: int, policy: int) -> int:
    return (gen * MAX_HOOKS + hook) * MAX_POLICIES + policy


def param_key(gen: int, hook: int, policy: int, phase: int, stage: int) -> int:
    return policy_index(gen, hook, policy) * STAGES_PER_POLICY + phase * MAX_STAGES + stage


def stage_stat_index(hook: int, policy: int, phase: int, stage: int) -> int:
    return (hook * MAX_POLICIES + policy) * STAGES_PER_POLICY + phase * MAX_STAGES + stage


def prog_key(gen: int, slot: int) -> int:
    return gen * SLOTS_PER_GEN + slot


def rule_index(gen: int, hook: int, rule: int) -> int:
    return (gen * MAX_HOOKS + hook) * MAX_RULES + rule


def row_index(gen: int, cls: int) -> int:
    return gen * MAX_CLASSES + cls


def hook_rules_index(gen: int, hook: int) -> int:
    return gen * MAX_HOOKS + hook


def pack_rules(bits: int) -> bytes:
    """A rule bitmap (bit r = rule r) as struct emptcp_rules."""
    mask = (1 << 64) - 1
    return RULES.pack(*((bits >> (64 * i)) & mask for i in range(RULE_WORDS)))


def instance_key(i: int) -> int:
    """Prog-array key of action instance number ``i`` (0..MAX_INSTANCES-1)."""
    if not 0 <= i < MAX_INSTANCES:
        raise ValueError(f"instance {i} out of range 0..{MAX_INSTANCES - 1}")
    return INSTANCE_BASE + i


# ---- encoders/decoders ----------------------------------------------------------

def param_byte(imm: int = 0, *, ref: bool = False, or_: bool = False) -> int:
    if not 0 <= imm <= P_IMM_MASK:
        raise ValueError(f"immediate parameter {imm} out of range 0..{P_IMM_MASK}")
    return (P_REF if ref else 0) | (P_OR if or_ else 0) | imm


@dataclass
class Policy:
    """One ``struct emptcp_policy``: selectors as (slot, param byte) pairs; the actions
    as their number and the prog-array key of the first one's instance."""
    selectors: list[tuple[int, int]] = field(default_factory=list)
    n_act: int = 0
    act_key: int = 0
    uid: int = 0

    def pack(self) -> bytes:
        if len(self.selectors) > MAX_STAGES or self.n_act > MAX_STAGES:
            raise ValueError(f"at most {MAX_STAGES} selectors and {MAX_STAGES} actions")
        if (self.n_act == 0) != (self.act_key == 0):
            raise ValueError(f"{self.n_act} action(s) but first action key {self.act_key}")

        def col(stages, i):
            return bytes(s[i] for s in stages).ljust(MAX_STAGES, b"\0")
        return POLICY.pack(len(self.selectors), self.n_act, self.uid,
                           col(self.selectors, 0), col(self.selectors, 1), self.act_key)

    @classmethod
    def unpack(cls, raw: bytes) -> "Policy":
        ns, na, uid, ss, sp, key = POLICY.unpack(raw)
        return cls([(ss[i], sp[i]) for i in range(ns)], na, key, uid)


@dataclass(frozen=True)
class Instance:
    """One ``struct emptcp_instance``: an action program instance's .rodata constants."""
    next_key: int = 0
    ref: bool = False
    imm: int = 0
    blob: bytes = b""

    #: the .rodata variable these constants are loaded into
    var = INSTANCE_VAR

    def pack(self) -> bytes:
        if len(self.blob) > PARAM_SIZE:
            raise ValueError(f"parameter blob is {len(self.blob)} bytes, at most {PARAM_SIZE}")
        return INSTANCE.pack(self.next_key, int(self.ref), self.imm,
                             self.blob.ljust(PARAM_SIZE, b"\0"))


@dataclass(frozen=True)
class Fused:
    """One ``struct emptcp_fused``: a fused instance's .rodata -- (operation, operand)
    pairs run in order, then the successor."""
    ops: tuple[tuple[int, int], ...] = ()
    next_key: int = 0

    #: the .rodata variable these constants are loaded into
    var = FUSED_VAR

    def pack(self) -> bytes:
        if not 1 <= len(self.ops) <= MAX_STAGES:
            raise ValueError(f"a fused instance runs 1..{MAX_STAGES} operations, not {len(self.ops)}")
        codes = bytes(op for op, _ in self.ops).ljust(MAX_STAGES, b"\0")
        args = [arg for _, arg in self.ops] + [0] * (MAX_STAGES - len(self.ops))
        return FUSED.pack(self.next_key, len(self.ops), codes, *args)


@dataclass
class Context:
    """The 20-byte chain context, decoded."""
    gen: int = 0
    phase: int = 0
    acc: int = 0
    hook: int = 0
    kind: int = 0
    policy: int = 0
    cur: int = 0
    stages: list[tuple[int, int]] = field(default_factory=list)
    abi: int = ABI_VERSION

    def pack(self) -> bytes:
        b0 = (self.abi << B0_ABI_SHIFT) | ((self.gen << B0_GEN_SHIFT) & B0_GEN_MASK) \
            | (B0_PHASE if self.phase else 0) | (B0_ACC if self.acc else 0)
        b1 = (self.hook & B1_HOOK_MASK) | ((self.kind << B1_KIND_SHIFT) & B1_KIND_MASK)
        st = b"".join(bytes(s) for s in self.stages).ljust(2 * MAX_STAGES, b"\0")
        return CTX.pack(b0, b1, self.policy, self.cur, st)

    @classmethod
    def unpack(cls, raw: bytes) -> "Context":
        b0, b1, pol, cur, st = CTX.unpack(raw[:CTX.size])
        stages = [(st[2 * i], st[2 * i + 1]) for i in range(MAX_STAGES)]
        return cls(gen=(b0 & B0_GEN_MASK) >> B0_GEN_SHIFT, phase=int(bool(b0 & B0_PHASE)),
                   acc=b0 & B0_ACC, hook=b1 & B1_HOOK_MASK,
                   kind=(b1 & B1_KIND_MASK) >> B1_KIND_SHIFT, policy=pol, cur=cur,
                   stages=stages, abi=b0 >> B0_ABI_SHIFT)


def sum_percpu(values, fields) -> dict[str, int]:
    """Sum a per-CPU list of raw stat values into {field: total}."""
    fmt = STAGE_STAT if len(fields) == 3 else HOOK_STAT
    out = dict.fromkeys(fields, 0)
    for raw in values:
        for name, v in zip(fields, fmt.unpack(bytes(raw)[:fmt.size])):
            out[name] += v
    return out
