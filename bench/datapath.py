"""``datapath.*``: kernel ns per packet of the emptcp chain vs one hand-written program.

Issue 9 (docs/datapath-v2.md).  emptcp side: the real chain (installed entry program
+ built-in stages + shared maps) through ``emptcp.plugins.testing.ChainHarness``;
baseline: bench/bpf/monolithic.bpf.c, one program doing the same work without
tail calls, compiled in the run.  Both run a 64-byte IPv4/TCP frame through
``BPF_PROG_TEST_RUN`` (``repeat=R``, kernel-reported ns per packet) on XDP and
TC (tc-ingress), back to back in every round; figures are medians over rounds.

Checked outside the timing, for every run: the verdict, the packet unchanged,
and the counters -- the stage that must run last (emptcp) or the counter the
baseline must bump moved by exactly R, and nothing else did (no missed tail
call, no error): with ``repeat > 1`` the kernel reuses the buffer and the
entry reuses the XDP metadata it finds, so the counters prove that every
repetition ran the whole chain.

Rows (``<hook>`` = xdp | tc):

- ``datapath.chain.<k>.<hook>`` (k = 1, 2, 4, 8): one policy ``service`` ->
  k x ``count`` vs a port check + k per-CPU counter increments.
- ``datapath.conn.<N>.<hook>`` (N = 1, 8, 31, 128): per-connection control as
  one ``tcp4tuple`` -> ``count`` policy per connection, the packet matches
  policy N; baseline: N connections in one hash map.
- ``datapath.entries.<N>.<hook>`` (N = 10 000, 1 000 000; not 1e6 with --quick):
  one ``tcp4tuple`` selector holding N connections (the set-valued selector)
  vs the same selector holding 1 -- emptcp against itself (issue 9: <= 1.2x).
- ``datapath.conn.mono.<N>.<hook>`` (N = 100, 10 000, 1 000 000; not 1e6 with
  --quick): the baseline alone -- N connections vs 1 in its hash map.
- ``datapath.policies.<P>.<hook>`` (P = 1, 16, 31, 128): P policies of one
  built-in selector each (``service``, one port), the packet matches the last;
  baseline: P port rules tried in order in one program.
- ``datapath.policies.scale.128.<hook>``: 128 such policies vs 1 -- emptcp
  against itself (issue 9: <= 1.3x).
- ``datapath.policies.mono.128.<hook>``: the baseline alone, 128 rules vs 1.
"""
from __future__ import annotations

import os
import struct

from ._util import median
from .registry import Context, Result, benchmark

SRC = os.path.join(os.path.dirname(os.path.abspath(__file__)), "bpf", "monolithic.bpf.c")
HOOKS = {"xdp": ("xdp", 2), "tc": ("tc-ingress", -1)}  # row suffix -> (emptcp kind, no-verdict
# verdict: XDP_PASS; TCX_NEXT on TC, which the monolithic program returns too)
LOCAL, REMOTE, LPORT, RPORT = "10.0.0.2", "10.0.0.1", 80, 40000   # ingress: local = destination
CONN_COUNTER, OTHER_COUNTER, RULE_COUNTER0 = 8, 9, 16          # as monolithic.bpf.c
MAX_RULES = 128


def _frame() -> bytes:
    from scapy.layers.inet import IP, TCP
    from scapy.layers.l2 import Ether
    f = bytes(Ether(src="02:00:00:00:00:01", dst="02:00:00:00:00:02")
              / IP(src=REMOTE, dst=LOCAL) / TCP(sport=RPORT, dport=LPORT, flags="A") / bytes(10))
    assert len(f) == 64, len(f)
    return f


def _params(ctx: Context) -> tuple[int, int]:
    """(repeat, rounds)"""
    return ctx.pick(100_000, 10_000), ctx.pick(5, 1)


# ---- baseline -------------------------------------------------------------
class Mono:
    """One load of monolithic.bpf.c; ``conns`` sizes its connection hash map."""

    def __init__(self, ctx: Context, conns: int = 1) -> None:
        import emptcp
        from emptcp import ObjectSpec
        from emptcp.bpfbuild import compile_bpf
        if "monolithic.o" not in ctx.cache:
            ctx.cache["monolithic.o"] = compile_bpf(
                SRC, os.path.join(ctx.tmpdir, "monolithic.o"), [emptcp.include_dir()])
        spec = ObjectSpec(ctx.cache["monolithic.o"])
        spec.maps["mono_conns"].max_entries = max(conns, 1)
        self.obj = spec.load()
        self.counts = self.obj.maps["mono_counts"]

    def prog(self, name: str, hook: str):
        return self.obj.programs[f"mono_{name}_{hook}"]

    def packets(self, idx: int) -> int:
        per_cpu = self.counts.lookup(idx.to_bytes(4, "little"))
        return sum(struct.unpack_from("<Q", v)[0] for v in per_cpu)

    def set_service(self, ports: list[int]) -> None:
        ranges = b"".join(struct.pack("<HH", p, p) for p in ports).ljust(15 * 4, b"\0")
        self.obj.maps["mono_svc"].put(bytes(4), struct.pack("<I", len(ports)) + ranges)

    def set_rules(self, ports: list[int]) -> None:
        ranges = b"".join(struct.pack("<HH", p, p) for p in ports).ljust(MAX_RULES * 4, b"\0")
        self.obj.maps["mono_rules"].put(bytes(4), struct.pack("<I", len(ports)) + ranges)

    def fill_conns(self, n: int) -> None:
        """n connections, the frame's one last (counter CONN_COUNTER), the others unique
        remote address/port pairs (counter OTHER_COUNTER); one batch syscall."""
        def key(raddr: bytes, rport: int) -> bytes:
            return (bytes([4, 0, 0, 0]) + LPORT.to_bytes(2, "big") + rport.to_bytes(2, "big")
                    + _ip(LOCAL).ljust(16, b"\0") + raddr.ljust(16, b"\0"))
        keys = [key(bytes([10, 1 + i // 60000 // 256, (i // 60000) % 256, 0]), 1024 + i % 60000)
                for i in range(n - 1)]
        keys.append(key(_ip(REMOTE), RPORT))
        values = struct.pack("<I", OTHER_COUNTER) * (n - 1) + struct.pack("<I", CONN_COUNTER)
        m = self.obj.maps["mono_conns"]
        if m.update_batch_packed(b"".join(keys), values) != n:
            raise AssertionError(f"mono_conns: fewer than {n} entries written")

    def close(self) -> None:
        self.obj.close()


def _ip(text: str) -> bytes:
    return bytes(int(x) for x in text.split("."))


# ---- runs -----------------------------------------------------------------
def _run_mono(mono: Mono, prog, frame: bytes, repeat: int, verdict: int, counter: int,
              idle: tuple[int, ...] = ()) -> int:
    before = [mono.packets(i) for i in (counter, *idle)]
    r = prog.test_run(frame, repeat=repeat)
    after = [mono.packets(i) for i in (counter, *idle)]
    moved = [a - b for a, b in zip(after, before)]
    if r.retval != verdict or r.data != frame or moved != [repeat] + [0] * len(idle):
        raise AssertionError(f"{prog.name}: retval {r.retval}, data changed {r.data != frame}, "
                             f"counters moved {moved} (want {repeat} then zeros)")
    return r.duration_ns


def _run_emptcp(h, kind: str, frame: bytes, repeat: int, verdict: int, policy: int,
                last_action: int) -> int:
    def snap():
        hs = h.hook_stats(kind)
        st = h.stage_stats(kind, policy, last_action, "actions")
        return (st["packets"], hs["matched"], hs["unmatched"], hs["missed_tail_calls"],
                hs["errors"])
    before = snap()
    r = h.run(kind, frame, repeat=repeat)
    moved = [a - b for a, b in zip(snap(), before)]
    if r.retval != verdict or r.data != frame or moved != [repeat, repeat, 0, 0, 0]:
        raise AssertionError(f"emptcp {kind}: retval {r.retval}, data changed {r.data != frame}, "
                             f"[last stage, matched, unmatched, missed, errors] moved {moved}, "
                             f"want [{repeat}, {repeat}, 0, 0, 0]")
    if kind == "xdp" and len(r.meta) != 20:
        raise AssertionError(f"emptcp xdp: {len(r.meta)} bytes of metadata, want the 20-byte context")
    return r.duration_ns


def _pairs(rounds: int, ours, theirs) -> tuple[float, float]:
    """Medians of (emptcp, baseline) measured back to back in each round."""
    a, b = [], []
    for _ in range(rounds):
        a.append(ours())
        b.append(theirs())
    return median(a), median(b)


def _harness(fuse: bool = True):
    from emptcp.plugins.testing import ChainHarness
    return ChainHarness(builtins=("service", "tcp4tuple", "count"), fuse=fuse)


# ---- benchmarks -------------------------------------------------------------
@benchmark("datapath.chain")
def chain(ctx: Context) -> list[Result]:
    repeat, rounds = _params(ctx)
    frame, out = _frame(), []
    mono = Mono(ctx)
    got: dict[tuple[str, str, int], tuple[float, float]] = {}
    try:
        mono.set_service([LPORT])
        for fuse, ks in ((True, (1, 2, 4, 8)), (False, (1, 8))):
            with _harness(fuse) as h:
                for k in ks:
                    h.clear()
                    for hook, (kind, verdict) in HOOKS.items():
                        h.policy(kind, selectors=[("service", {"ports": [LPORT]})],
                                 actions=["count"] * k)
                    for hook, (kind, verdict) in HOOKS.items():
                        prog = mono.prog(f"chain{k}", hook)
                        idle = (k,) if k < 8 else ()
                        got[(hook, "fused" if fuse else "unfused", k)] = ours, theirs = _pairs(
                            rounds,
                            lambda: _run_emptcp(h, kind, frame, repeat, verdict, 0, k - 1),
                            lambda: _run_mono(mono, prog, frame, repeat, verdict, k - 1, idle))
                        how = ("fused into one program" if fuse else
                               "each its own program (fusing off)") if k > 1 else "one program"
                        out.append(Result(
                            f"datapath.chain.{'' if fuse else 'unfused.'}{k}.{hook}", ours, "ns/op",
                            f"monolithic {prog.name}: port check + {k} per-CPU counter "
                            f"increment(s)", theirs,
                            f"kernel ns per 64-byte TCP frame ({kind}, test_run repeat={repeat}, "
                            f"{rounds} round(s)): emptcp entry + `service` selector + {k} x "
                            f"`count` ({how}) vs one program doing the same work"))
    finally:
        mono.close()
    # issue 9: an extra action costs <= 8 ns more than the monolithic program's same work
    for hook in HOOKS:
        for how in ("fused", "unfused"):
            (e1, m1), (e8, m8) = got[(hook, how, 1)], got[(hook, how, 8)]
            ours, theirs = max((e8 - e1) / 7, 0.01), max((m8 - m1) / 7, 0.01)
            out.append(Result(
                f"datapath.chain.per_action.{how}.{hook}", ours, "ns/op",
                "monolithic: one more per-CPU counter increment", theirs,
                f"ns per extra `count` action, (k=8 - k=1) / 7 from the rows above ({how}); "
                f"emptcp - monolithic = {ours - theirs:+.1f} ns (issue 9 target: <= +8 ns)"))
    return out


@benchmark("datapath.conn")
def conn(ctx: Context) -> list[Result]:
    repeat, rounds = _params(ctx)
    frame, out = _frame(), []
    with _harness() as h:
        for n in (1, 8, 31, 128):
            mono = Mono(ctx, conns=n)
            try:
                mono.fill_conns(n)
                h.clear()
                for hook, (kind, verdict) in HOOKS.items():
                    for i in range(n):
                        rport = RPORT if i == n - 1 else 41000 + i
                        h.policy(kind, selectors=[("tcp4tuple", {
                            "local_addr": LOCAL, "local_port": LPORT,
                            "remote_addr": REMOTE, "remote_port": rport})], actions=["count"])
                for hook, (kind, verdict) in HOOKS.items():
                    prog = mono.prog("conn", hook)
                    ours, theirs = _pairs(
                        rounds,
                        lambda: _run_emptcp(h, kind, frame, repeat, verdict, n - 1, 0),
                        lambda: _run_mono(mono, prog, frame, repeat, verdict, CONN_COUNTER,
                                          (OTHER_COUNTER,)))
                    out.append(Result(
                        f"datapath.conn.{n}.{hook}", ours, "ns/op",
                        f"monolithic {prog.name}: {n} connection(s) in one hash map", theirs,
                        f"kernel ns per 64-byte TCP frame ({kind}, repeat={repeat}, {rounds} "
                        f"round(s)) of a connection's packet: one `tcp4tuple` -> `count` policy "
                        f"per connection, packet matching policy {n} of {n} (classified by "
                        f"the entry, then 1 tail call)"))
            finally:
                mono.close()
    return out + _conn_mono(ctx, repeat, rounds, frame)


def _tuple(rport: int) -> dict:
    return {"local_addr": LOCAL, "local_port": LPORT, "remote_addr": REMOTE, "remote_port": rport}


@benchmark("datapath.entries")
def entries(ctx: Context) -> list[Result]:
    """One set-valued tcp4tuple selector with N entries vs 1 entry (emptcp vs itself)."""
    repeat, rounds = _params(ctx)
    frame, out = _frame(), []
    from emptcp.plugins.testing import ChainHarness
    with _harness() as one, ChainHarness(builtins=("tcp4tuple", "count")) as many:
        for hook, (kind, _) in HOOKS.items():
            one.policy(kind, selectors=[("tcp4tuple", _tuple(RPORT))], actions=["count"])
        for n in ctx.pick((10_000, 1_000_000), (10_000,)):
            conns = [_tuple(RPORT)] + [
                {"local_addr": f"10.{1 + (i >> 16)}.{(i >> 8) & 255}.{i & 255}",
                 "local_port": LPORT, "remote_addr": REMOTE, "remote_port": RPORT}
                for i in range(n - 1)]
            many.clear()
            for hook, (kind, _) in HOOKS.items():
                many.policy(kind, selectors=[("tcp4tuple", {"entries": conns})], actions=["count"])
            for hook, (kind, verdict) in HOOKS.items():
                ours, theirs = _pairs(
                    rounds,
                    lambda: _run_emptcp(many, kind, frame, repeat, verdict, 0, 0),
                    lambda: _run_emptcp(one, kind, frame, repeat, verdict, 0, 0))
                out.append(Result(
                    f"datapath.entries.{n}.{hook}", ours, "ns/op",
                    "emptcp: the same selector holding 1 connection", theirs,
                    f"kernel ns per 64-byte TCP frame ({kind}, repeat={repeat}, {rounds} "
                    f"round(s)): one `tcp4tuple` -> `count` policy whose selector holds {n} "
                    "connections (one hash lookup); the packet's connection is one of them"))
    return out


def _conn_mono(ctx: Context, repeat: int, rounds: int, frame: bytes) -> list[Result]:
    """Baseline alone: N connections vs 1 in its hash map (emptcp cannot hold N > 31)."""
    out = []
    one = Mono(ctx, conns=1)
    try:
        one.fill_conns(1)
        for n in ctx.pick((100, 10_000, 1_000_000), (100, 10_000)):
            many = Mono(ctx, conns=n)
            try:
                many.fill_conns(n)
                for hook, (kind, verdict) in HOOKS.items():
                    p_many, p_one = many.prog("conn", hook), one.prog("conn", hook)
                    ours, theirs = _pairs(
                        rounds,
                        lambda: _run_mono(many, p_many, frame, repeat, verdict, CONN_COUNTER,
                                          (OTHER_COUNTER,)),
                        lambda: _run_mono(one, p_one, frame, repeat, verdict, CONN_COUNTER))
                    out.append(Result(
                        f"datapath.conn.mono.{n}.{hook}", ours, "ns/op",
                        f"monolithic {p_one.name}: 1 connection in its hash map", theirs,
                        f"BASELINE ONLY (the value column is the monolithic program, not emptcp; "
                        f"see datapath.entries): {n} connections in one hash "
                        f"map, kernel ns per 64-byte frame ({kind}, repeat={repeat}); the same "
                        f"packet every time, so the lookup is cache-hot"))
            finally:
                many.close()
    finally:
        one.close()
    return out


@benchmark("datapath.policies")
def policies(ctx: Context) -> list[Result]:
    repeat, rounds = _params(ctx)
    frame, out = _frame(), []
    mono = Mono(ctx)
    try:
        with _harness() as h:
            for p in (1, 16, 31, MAX_RULES):
                ports = [1000 + i for i in range(p - 1)] + [LPORT]
                mono.set_rules(ports)
                h.clear()
                for hook, (kind, verdict) in HOOKS.items():
                    for port in ports:
                        h.policy(kind, selectors=[("service", {"ports": [port],
                                                               "mode": "local"})],
                                 actions=["count"])
                for hook, (kind, verdict) in HOOKS.items():
                    prog = mono.prog("rules", hook)
                    ours, theirs = _pairs(
                        rounds,
                        lambda: _run_emptcp(h, kind, frame, repeat, verdict, p - 1, 0),
                        lambda: _run_mono(mono, prog, frame, repeat, verdict,
                                          RULE_COUNTER0 + p - 1))
                    out.append(Result(
                        f"datapath.policies.{p}.{hook}", ours, "ns/op",
                        f"monolithic {prog.name}: {p} port rule(s) tried in order", theirs,
                        f"kernel ns per 64-byte TCP frame ({kind}, repeat={repeat}, {rounds} "
                        f"round(s)): {p} policies of one `service` selector (one port, mode "
                        f"local) + `count`, packet matching the last (classified by the entry, "
                        f"then 1 tail call)"))
            out += _policies_scale(ctx, h, repeat, rounds, frame)
            out += _policies_mono(mono, repeat, rounds, frame)
    finally:
        mono.close()
    return out


def _policies_scale(ctx: Context, many, repeat: int, rounds: int, frame: bytes) -> list[Result]:
    """emptcp against itself: 128 policies (``many`` holds them) vs 1, same packet."""
    from emptcp.plugins.testing import ChainHarness
    out = []
    with ChainHarness(builtins=("service", "count")) as one:
        for hook, (kind, _) in HOOKS.items():
            one.policy(kind, selectors=[("service", {"ports": [LPORT], "mode": "local"})],
                       actions=["count"])
        for hook, (kind, verdict) in HOOKS.items():
            ours, theirs = _pairs(
                rounds,
                lambda: _run_emptcp(many, kind, frame, repeat, verdict, MAX_RULES - 1, 0),
                lambda: _run_emptcp(one, kind, frame, repeat, verdict, 0, 0))
            out.append(Result(
                f"datapath.policies.scale.{MAX_RULES}.{hook}", ours, "ns/op",
                "emptcp: 1 policy", theirs,
                f"kernel ns per 64-byte TCP frame ({kind}, repeat={repeat}): {MAX_RULES} `service` "
                "policies, packet matching the last, vs one policy"))
    return out


def _policies_mono(mono: Mono, repeat: int, rounds: int, frame: bytes) -> list[Result]:
    """Baseline alone: 128 rules vs 1 (emptcp cannot walk 128 policies)."""
    many = [1000 + i for i in range(MAX_RULES - 1)] + [LPORT]
    out = []
    for hook, (kind, verdict) in HOOKS.items():
        prog = mono.prog("rules", hook)

        def run(ports):
            mono.set_rules(ports)
            return _run_mono(mono, prog, frame, repeat, verdict, RULE_COUNTER0 + len(ports) - 1)
        ours, theirs = _pairs(rounds, lambda: run(many), lambda: run([LPORT]))
        out.append(Result(
            f"datapath.policies.mono.{MAX_RULES}.{hook}", ours, "ns/op",
            f"monolithic {prog.name}: 1 rule", theirs,
            f"BASELINE ONLY (the value column is the monolithic program, not emptcp): "
            f"{MAX_RULES} port rules tried in "
            f"order, packet matching the last, kernel ns per 64-byte frame ({kind}, "
            f"repeat={repeat})"))
    return out
