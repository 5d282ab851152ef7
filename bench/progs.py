"""BPF_PROG_TEST_RUN of a tiny XDP program: Program.test_run vs bpftool prog run.

Two different things are measured:

- ``prog.test_run.kernel``: the kernel's own per-repetition average
  (``duration`` of BPF_PROG_TEST_RUN with ``repeat=R``), as reported back to
  each caller. This is time spent *in the kernel* running the program; the
  caller (Python or bpftool) is outside the clock, so the ratio should be ~1 and
  only shows that emptcp passes the same packet/context and adds nothing
  in-kernel. The kernel reports whole nanoseconds, so the ratio of two ~20 ns
  figures moves in steps of ~5%.
- ``prog.test_run.call``: wall-clock time of one ``test_run(pkt)`` call
  (repeat=1) from Python, vs one ``bpftool prog run`` process per run.
"""
from __future__ import annotations

import os

from ._util import bench_object_path, bpftool, median, parse_json, timed
from .registry import Context, Result, benchmark

PROG = "xdp_tiny"
XDP_PASS = 2
PACKET = bytes.fromhex("ffffffffffff" "020000000001" "0800") + bytes(50)  # 64-byte frame


def _program(ctx: Context):
    from emptcp import ObjectSpec
    obj = ObjectSpec(bench_object_path(ctx)).load()
    return obj, obj.programs[PROG]


def _packet_file(ctx: Context) -> str:
    path = os.path.join(ctx.tmpdir, "packet.bin")
    with open(path, "wb") as f:
        f.write(PACKET)
    return path


@benchmark("prog.test_run.kernel")
def test_run_kernel(ctx: Context) -> list[Result]:
    repeat, rounds = ctx.pick(1_000_000, 100_000), ctx.pick(5, 1)
    data_in = _packet_file(ctx)
    obj, prog = _program(ctx)
    with obj:
        ours, theirs = [], []
        for _ in range(rounds):
            r = prog.test_run(PACKET, repeat=repeat)
            if r.retval != XDP_PASS or r.data != PACKET:
                raise AssertionError(f"test_run: retval {r.retval}, data changed: {r.data != PACKET}")
            if r.duration_ns <= 0:
                raise AssertionError("test_run reported a zero duration")
            ours.append(r.duration_ns)

            out = parse_json(bpftool("-j", "prog", "run", "id", prog.id, "data_in", data_in,
                                     "repeat", repeat))
            if out["retval"] != XDP_PASS or out["duration"] <= 0:
                raise AssertionError(f"bpftool prog run: {out}")
            theirs.append(out["duration"])
    return [Result("prog.test_run.kernel", median(ours), "ns/op",
                   f"bpftool -j prog run repeat {repeat} (kernel-reported average)",
                   median(theirs),
                   f"kernel time per run of a tiny XDP program on a 64-byte frame, "
                   f"BPF_PROG_TEST_RUN repeat={repeat}, as reported by the kernel "
                   "(caller overhead excluded)")]


@benchmark("prog.test_run.call")
def test_run_call(ctx: Context) -> list[Result]:
    calls, sample, rounds = ctx.pick(20000, 1000), ctx.pick(200, 10), ctx.pick(5, 1)
    data_in = _packet_file(ctx)
    obj, prog = _program(ctx)
    with obj:
        ours, theirs = [], []
        for _ in range(rounds):
            run = prog.test_run
            dt, results = timed(lambda: [run(PACKET) for _ in range(calls)])
            if any(r.retval != XDP_PASS for r in results):
                raise AssertionError("test_run returned a wrong verdict")
            ours.append(dt / calls)

            dt, outs = timed(lambda: [bpftool("-j", "prog", "run", "id", prog.id,
                                              "data_in", data_in) for _ in range(sample)])
            if any(parse_json(o)["retval"] != XDP_PASS for o in outs):
                raise AssertionError("bpftool prog run returned a wrong verdict")
            theirs.append(dt / sample)
    return [Result("prog.test_run.call", median(ours) * 1e6, "µs/op",
                   f"bpftool -j prog run, 1 process per run ({sample} sampled)",
                   median(theirs) * 1e6,
                   "wall time of one Program.test_run(64-byte frame) call, repeat=1 "
                   "(Python + syscall + result object)")]
