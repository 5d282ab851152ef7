"""abi.py must match the C headers: generate static asserts from abi.py and
let clang check them, and compare the maps of a compiled object."""
from __future__ import annotations

import os

from emptcp import abi
from emptcp.bpf.objects import ObjectSpec

from .conftest import BPF


def generated_checks() -> str:
    lines = ['#include "emptcp.h"', "#include <stddef.h>"]
    for name, (size, members) in abi.LAYOUT.items():
        lines.append(f'_Static_assert(sizeof(struct {name}) == {size}, "sizeof {name}");')
        for m, off in members.items():
            lines.append(f'_Static_assert(offsetof(struct {name}, {m}) == {off}, "{name}.{m}");')
    consts = {"EMPTCP_ABI_VERSION": abi.ABI_VERSION, "EMPTCP_MAX_GEN": abi.MAX_GEN,
              "EMPTCP_MAX_HOOKS": abi.MAX_HOOKS, "EMPTCP_MAX_POLICIES": abi.MAX_POLICIES,
              "EMPTCP_MAX_STAGES": abi.MAX_STAGES, "EMPTCP_SLOTS_PER_GEN": abi.SLOTS_PER_GEN,
              "EMPTCP_PARAM_SIZE": abi.PARAM_SIZE, "EMPTCP_MAX_PARAMS": abi.MAX_PARAMS,
              "EMPTCP_MAX_TAIL_CALLS": abi.MAX_TAIL_CALLS, "EMPTCP_P_REF": abi.P_REF,
              "EMPTCP_P_OR": abi.P_OR, "EMPTCP_P_IMM_MASK": abi.P_IMM_MASK,
              "EMPTCP_B0_ABI_SHIFT": abi.B0_ABI_SHIFT, "EMPTCP_B0_GEN_SHIFT": abi.B0_GEN_SHIFT,
              "EMPTCP_B0_GEN_MASK": abi.B0_GEN_MASK, "EMPTCP_B0_PHASE": abi.B0_PHASE,
              "EMPTCP_B0_ACC": abi.B0_ACC, "EMPTCP_B1_HOOK_MASK": abi.B1_HOOK_MASK,
              "EMPTCP_B1_KIND_SHIFT": abi.B1_KIND_SHIFT, "EMPTCP_B1_KIND_MASK": abi.B1_KIND_MASK,
              "EMPTCP_KIND_XDP": abi.KIND_XDP, "EMPTCP_KIND_TC_INGRESS": abi.KIND_TC_INGRESS,
              "EMPTCP_KIND_TC_EGRESS": abi.KIND_TC_EGRESS, "EMPTCP_EV_ADD_SUBFLOW": abi.EV_ADD_SUBFLOW,
              "EMPTCP_EV_MPTCP_OPT": abi.EV_MPTCP_OPT, "EMPTCP_SCRATCH_SIZE": abi.SCRATCH_SIZE,
              "EMPTCP_EV_LOG": abi.EV_LOG, "EMPTCP_STAGES_PER_POLICY": abi.STAGES_PER_POLICY,
              "EMPTCP_EVENTS_BYTES": abi.EVENTS_BYTES, "EMPTCP_SUBTYPE_ANY": abi.SUBTYPE_ANY,
              "EMPTCP_MAX_RULES": abi.MAX_RULES, "EMPTCP_RULE_WORDS": abi.RULE_WORDS,
              "EMPTCP_MAX_CLASSES": abi.MAX_CLASSES, "EMPTCP_MAX_KEYS": abi.MAX_KEYS,
              "EMPTCP_MAX_PREFIXES": abi.MAX_PREFIXES, "EMPTCP_NUM_DIMS": abi.NUM_DIMS,
              "EMPTCP_PREFIX_HDR_BITS": abi.PREFIX_HDR_BITS,
              "EMPTCP_PORT_TABLES_PER_GEN": abi.PORT_TABLES_PER_GEN,
              "EMPTCP_HOOK_SLOTS": abi.HOOK_SLOTS,
              "EMPTCP_INSTANCE_BASE": abi.INSTANCE_BASE, "EMPTCP_MAX_INSTANCES": abi.MAX_INSTANCES,
              "EMPTCP_PROG_ARRAY_SIZE": abi.PROG_ARRAY_SIZE,
              "EMPTCP_OP_COUNT": abi.OP_COUNT, "EMPTCP_OP_SET_RECV_WIN": abi.OP_SET_RECV_WIN,
              "EMPTCP_OP_DROP": abi.OP_DROP, "EMPTCP_OP_PASS": abi.OP_PASS,
              "EMPTCP_OP_REDIRECT": abi.OP_REDIRECT}
    from emptcp.chain.sets import DIM_NUMBERS
    for dim, n in DIM_NUMBERS.items():
        consts[f"EMPTCP_DIM_{dim.upper()}"] = n
    for c, v in consts.items():
        lines.append(f'_Static_assert({c} == {v}, "{c}");')
    idx = [(abi.policy_index(3, 31, 127), "EMPTCP_POLICY_IDX(3, 31, 127)"),
           (abi.param_key(2, 5, 7, 1, 6), "EMPTCP_PARAM_KEY(2, 5, 7, 1, 6)"),
           (abi.stage_stat_index(4, 9, 1, 3), "EMPTCP_STAGE_STAT_IDX(4, 9, 1, 3)"),
           (abi.prog_key(3, 255), "EMPTCP_PROG_KEY(3, 255)"),
           (abi.rule_index(3, 31, 255), "EMPTCP_RULE_IDX(3, 31, 255)"),
           (abi.row_index(3, 16383), "EMPTCP_ROW_IDX(3, 16383)")]
    for v, expr in idx:
        lines.append(f'_Static_assert({expr} == {v}, "{expr}");')
    lines.append(f'_Static_assert(sizeof({abi.INSTANCE_VAR}) == {abi.INSTANCE.size}, '
                 f'"{abi.INSTANCE_VAR} is a struct emptcp_instance");')
    return "\n".join(lines) + "\n"


def test_abi_py_matches_c_headers(tmp_path):
    src = tmp_path / "abi_check.bpf.c"
    src.write_text(generated_checks())
    from emptcp.build.compile import compile_bpf   # the shipped build flags
    compile_bpf(str(src), str(tmp_path / "abi_check.o"), [os.path.join(BPF, "common")])


def test_map_definitions_match(objdir):
    types = {"prog_array": 3, "array": 2, "hash": 1, "percpu_array": 6, "ringbuf": 27,
             "lpm_trie": 11}
    with ObjectSpec(os.path.join(objdir, "entry.o")) as spec:
        for name, (t, ks, vs, n) in abi.MAPS.items():
            m = spec.maps[name]
            assert (m.type, m.max_entries) == (types[t], n), name
            if t != "ringbuf":
                assert (m.key_size, m.value_size) == (ks, vs), name
            assert m.pin_path is None, f"{name}: shared maps carry no pinning attribute"


def test_context_roundtrip():
    c = abi.Context(gen=3, phase=1, acc=1, hook=17, kind=2, policy=99, cur=5,
                    stages=[(1, 0x85), (255, 0x7f)])
    raw = c.pack()
    assert len(raw) == 20 and raw[0] >> 4 == abi.ABI_VERSION
    d = abi.Context.unpack(raw)
    assert (d.gen, d.phase, d.acc, d.hook, d.kind, d.policy, d.cur) == (3, 1, 1, 17, 2, 99, 5)
    assert d.stages[:2] == [(1, 0x85), (255, 0x7f)]
