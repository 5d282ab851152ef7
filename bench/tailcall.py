"""``datapath.tailcall.*``: what one XDP tail call costs, by how its index is known.

Groundwork for issue 9 (which tail-call mechanism the new data path uses).
bench/bpf/tailcall.bpf.c holds, per variant, 4 distinct programs that
tail-call each other in a cycle for 32 hops (31 tail calls), each hop
counting in the packet; ``mono`` runs the same 32 hop bodies in one program.
Cost per tail call = (chain - mono) / 31, kernel ns from BPF_PROG_TEST_RUN,
computed per round (all variants back to back), median over rounds.  Every
run is checked outside the timing: verdict XDP_TX and the packet's counter =
repeat * 32 (every hop of every repetition ran).

Each row's baseline is the run-time key (today's stages: ``gen*256+slot``
read from the context), except the run-time row itself, whose baseline is the
constant key; ratio > 1 = the variant is cheaper than the baseline.
"""
from __future__ import annotations

import os
import struct

from ._proginfo import jit_and_verifier
from ._util import median
from .registry import Context, Result, benchmark

SRC = os.path.join(os.path.dirname(os.path.abspath(__file__)), "bpf", "tailcall.bpf.c")
HOPS, COPIES = 32, 4          # as in tailcall.bpf.c
CALLS = HOPS - 1
XDP_TX = 3
GEN = 0                       # keys gen*256+slot; sw64/sw256 only cover gen 0

VARIANTS = {  # name -> (row, what)
    "rt": ("runtime_key", "bpf_tail_call(ctx, &map, gen*256 + slot) with gen and slot read "
                          "from the packet at run time (today's emptcp stages)"),
    "cst": ("const_key", "bpf_tail_call_static: constant key at the call site (the JIT "
                         "patches a direct jump)"),
    "sw64": ("switch64", "run-time key, then switch over 64 keys, each case a constant-key "
                         "tail call (per-slot call sites)"),
    "sw256": ("switch256", "run-time key, then switch over 256 keys (one generation's slots), "
                           "each case a constant-key tail call"),
    "sw1024": ("switch1024", "run-time key, then switch over 1024 keys (every gen*256+slot), "
                             "each case a constant-key tail call"),
    "gen": ("per_gen_array", "one prog array per generation, chosen by a 4-way switch on the "
                             "run-time generation; constant slot"),
    "ro": ("rodata_key", "bpf_tail_call(ctx, &map, key) with the key read from .rodata, which "
                         "libbpf freezes at load so the verifier knows it as a constant (a "
                         "successor key set per program instance at load time)"),
}


def _packet() -> bytes:
    pkt = bytearray(64)
    pkt[6] = GEN
    for j in range(COPIES):
        pkt[8 + j] = (j + 1) % COPIES + 1     # slot of copy j's successor
    return bytes(pkt)


def _load(ctx: Context):
    from emptcp import ObjectSpec
    from emptcp.bpfbuild import compile_bpf
    obj = ObjectSpec(compile_bpf(SRC, os.path.join(ctx.tmpdir, "tailcall.o"))).load()
    try:
        for v in VARIANTS:
            table = obj.map("progs_gen%d" % GEN if v == "gen" else f"progs_{v}")
            for j in range(COPIES):
                table.put((GEN * 256 + j + 1).to_bytes(4, "little"),
                          obj.programs[f"{v}_{j}"].fd.to_bytes(4, "little"))
    except BaseException:
        obj.close()
        raise
    return obj


def _run(prog, pkt: bytes, repeat: int) -> int:
    r = prog.test_run(pkt, repeat=repeat)
    count = struct.unpack_from("<I", r.data)[0]
    if r.retval != XDP_TX or count != (repeat * HOPS) % 2**32 or r.data[4] != 0:
        raise AssertionError(f"{prog.name}: retval {r.retval}, counter {count} != "
                             f"{repeat} * {HOPS}: the chain did not run every hop")
    if r.duration_ns <= 0:
        raise AssertionError(f"{prog.name}: zero duration")
    return r.duration_ns


@benchmark("datapath.tailcall")
def tailcall(ctx: Context) -> list[Result]:
    repeat, rounds = ctx.pick(200_000, 20_000), ctx.pick(9, 1)
    pkt = _packet()
    obj = _load(ctx)
    with obj:
        progs = {v: obj.programs[f"{v}_0"] for v in VARIANTS}
        mono = obj.programs["mono"]
        per_call: dict[str, list[float]] = {v: [] for v in VARIANTS}
        chain: dict[str, list[int]] = {v: [] for v in VARIANTS}
        monos = []
        for _ in range(rounds):
            m = _run(mono, pkt, repeat)
            monos.append(m)
            for v, prog in progs.items():
                d = _run(prog, pkt, repeat)
                chain[v].append(d)
                per_call[v].append((d - m) / CALLS)
        sizes = {v: jit_and_verifier(obj.programs[f"{v}_0"].fd) for v in VARIANTS}
    cost = {v: median(xs) for v, xs in per_call.items()}
    bad = {v: c for v, c in cost.items() if c <= 0}
    if bad:
        raise AssertionError(f"tail calls measured as free or negative ({bad}): mono "
                             f"{median(monos)} ns; too noisy to report")
    out = []
    for v, (row, what) in VARIANTS.items():
        jited, verified = sizes[v]
        base_v = "cst" if v == "rt" else "rt"
        out.append(Result(
            f"datapath.tailcall.{row}", cost[v], "ns/op",
            f"{VARIANTS[base_v][0]} per tail call, same rounds", cost[base_v],
            f"one XDP tail call: {what}. (chain of {HOPS} programs, median "
            f"{median(chain[v]):.0f} ns/packet, minus the same {HOPS} bodies in one program, "
            f"median {median(monos):.0f} ns) / {CALLS}; repeat={repeat}, {rounds} round(s). "
            f"One hop program: {jited} bytes JIT'd, {verified} insns processed by the "
            f"verifier"))
    return out
