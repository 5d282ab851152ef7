"""``emptcp demo [SCENARIO]``: see emptcp steer a real MPTCP connection.

Each scenario builds a two-path rig (client and server network namespaces joined by
two veth pairs, :mod:`emptcp.rig`), renders its policy from ``emptcp/cli/scenarios/
<name>.toml`` (a template: ``${client_if1}``, ``${server_addr0}``, ``${port}``... are
filled in, because the rig's interface names are generated per run), applies it
inside one namespace under a private pin root, runs verified traffic, prints the
before/after evidence (interface bytes per path, the kernel's MPTcpExt counters,
``ss`` subflow flags, emptcp's per-stage counters) and tears everything down.

The exit code is 0 only when the evidence shows the expected effect.
:func:`run_scenario` returns the same checks and evidence as a dict (the tests use it).
"""
from __future__ import annotations

import contextlib
import json
import os
import signal
import string
import sys
import tempfile
import time
import uuid
from dataclasses import dataclass, field
from typing import Any, Callable, Dict, List, Optional

SCENARIO_DIR = os.path.join(os.path.dirname(os.path.abspath(__file__)), "scenarios")
DEFAULT = "backup"
FALLBACK = "recv-win"      # default when the emptcp-mptcp plugin is not installed
TIME_LIMIT = 30.0
#: how much slower than native this run may be: a scenario given a longer time limit than
#: TIME_LIMIT (the kernel matrix's emulated guests, ~10x slower) stretches its waits and
#: transfer lengths by the same factor, so a slow machine is not mistaken for a failure
_slack = 1.0


def _t(seconds: float) -> float:
    """``seconds`` of this run: a native duration or timeout stretched by the slack."""
    return seconds * _slack


def scenario_path(name: str) -> str:
    return os.path.join(SCENARIO_DIR, f"{name}.toml")


def render(name: str, rig: Any, **extra: Any) -> str:
    """The scenario's policy text with the rig's names and ``extra`` substituted."""
    with open(scenario_path(name)) as f:
        text = f.read()
    v: Dict[str, Any] = {}
    for p in rig.paths:
        v.update({f"client_if{p.index}": p.client_if, f"server_if{p.index}": p.server_if,
                  f"client_addr{p.index}": p.client_addr, f"server_addr{p.index}": p.server_addr})
    v.update({k: (str(x).lower() if isinstance(x, bool) else x) for k, x in extra.items()})
    return string.Template(text).substitute(v)


def plugin_installed() -> bool:
    try:
        from ..plugins.manager import PluginManager
        return "set_flow_priority" in PluginManager().stages()
    except Exception:
        return False


# ---- evidence helpers --------------------------------------------------------------
class Policy:
    """One applied policy file in one namespace, under a private pin root."""

    def __init__(self, side: Any, workdir: str, tag: str):
        self.side, self.workdir = side, workdir
        self.pin_root = f"/sys/fs/bpf/emptcp-demo-{tag}-{uuid.uuid4().hex[:6]}"
        self.applied = False
        self.n = 0

    def apply(self, name: str, rig: Any, **extra: Any) -> float:
        from ..runtime import api
        self.n += 1
        path = os.path.join(self.workdir, f"{name}-{self.n}.toml")
        with open(path, "w") as f:
            f.write(render(name, rig, **extra))
        t0 = time.monotonic()
        self.applied = True
        with self.side.enter():   # interface names resolve in the rig namespace
            api.apply(path, self.pin_root)
        return time.monotonic() - t0

    def counters(self) -> Dict[str, Dict[str, int]]:
        """{policy: {"<i>:<stage>": packets}} (selectors s0.., actions a0..)."""
        from ..runtime import api
        if not self.applied:
            return {}
        out: Dict[str, Dict[str, int]] = {}
        for h in api.status(self.pin_root).get("hooks", []):
            for p in h["policies"]:
                d = out.setdefault(p["name"], {})
                for kind in ("selectors", "actions"):
                    for i, s in enumerate(p[kind]):
                        d[f"{kind[0]}{i}:{s['use']}"] = s["counters"]["packets"]
        return out

    def detach(self) -> None:
        if self.applied:
            from ..runtime import api
            with contextlib.suppress(Exception):
                api.detach(pin_root=self.pin_root, all=True)
            self.applied = False


def _wait(cond: Callable[[], Any], timeout: float, step: float = 0.05) -> Any:
    """Poll ``cond`` until it is truthy or ``timeout`` s passed; its last value. A scenario
    waits for the condition its measurement needs, never for a fixed time; a condition
    that does not come shows up in the checks that follow."""
    end = time.monotonic() + _t(timeout)
    while True:
        v = cond()
        if v or time.monotonic() > end:
            return v
        time.sleep(step)


def _both_paths_carry(rig: Any, key: str, nbytes: int) -> Callable[[], bool]:
    """A condition: from now on, every path's ``key`` byte counter grew by ``nbytes``."""
    b0 = rig.path_bytes()
    return lambda: all(b[key] - a[key] >= nbytes for a, b in zip(b0, rig.path_bytes()))


def _nstat_moved(side: Any, name: str) -> Callable[[], bool]:
    n0 = side.nstat().get(name, 0)
    return lambda: side.nstat().get(name, 0) > n0


def _window(rig: Any, seconds: float) -> List[Dict[str, int]]:
    """Bytes per path over a measurement interval of ``seconds``."""
    b0 = rig.path_bytes()
    time.sleep(seconds)
    b1 = rig.path_bytes()
    return [{k: b1[i][k] - b0[i][k] for k in b0[i]} for i in range(len(b0))]


def _share(win: List[Dict[str, int]], key: str, i: int) -> float:
    tot = sum(w[key] for w in win)
    return win[i][key] / tot if tot else 0.0


def _flows(side: Any) -> List[Dict[str, Any]]:
    return [{"local": f"{e.local}:{e.lport}", "remote": f"{e.remote}:{e.rport}",
             "flags": e.sf_flags, "bytes_sent": e.bytes_sent,
             "bytes_received": e.bytes_received} for e in side.subflows()]


def _delta(before: Dict[str, int], after: Dict[str, int]) -> Dict[str, int]:
    from ..rig import nstat_delta
    d = nstat_delta(before, after, "MPTcpExt")
    d = {k: v for k, v in d.items() if not k.startswith("MPTcpExtOFO")
         and k not in ("MPTcpExtRcvWndShared", "MPTcpExtRcvPruned")}
    for k in ("TcpInCsumErrors",):
        d[k] = after.get(k, 0) - before.get(k, 0)
    return d


def _action_packets(status: Dict[str, Any]) -> Dict[str, Dict[str, int]]:
    """{policy: {"a<i>:<action>": packets}} from ``emptcp status --json``."""
    return {p["name"]: {f"a{i}:{a['use']}": a["counters"]["packets"]
                        for i, a in enumerate(p["actions"])}
            for h in status.get("hooks", []) for p in h["policies"]}


def _check_ran_and_intact(res: "Result", counters: Dict[str, Dict[str, int]], policy: str,
                          srv_rep: List[dict], rep: dict) -> None:
    """The checks every set_flow_priority scenario ends with: the stage ran, and the
    download arrived whole (the server's bytes sent == the client's bytes received)."""
    act = counters.get(policy, {}).get("a1:set_flow_priority", 0)
    res.check(act > 0, "set_flow_priority stage ran", f"{act} packets")
    sent = srv_rep[0].get("bytes_sent") if srv_rep else None
    res.check(bool(rep.get("intact")) and sent == rep.get("bytes_received"),
              "transfer intact (every byte the server sent arrived)",
              f"{rep.get('bytes_received')} of {sent} bytes")


@dataclass
class Result:
    name: str
    checks: List[Dict[str, Any]] = field(default_factory=list)
    evidence: Dict[str, Any] = field(default_factory=dict)
    notes: List[str] = field(default_factory=list)
    runtime: float = 0.0
    error: Optional[str] = None

    def check(self, ok: bool, what: str, detail: Any = "") -> bool:
        self.checks.append({"ok": bool(ok), "what": what, "detail": str(detail)})
        return bool(ok)

    @property
    def ok(self) -> bool:
        return self.error is None and bool(self.checks) and all(c["ok"] for c in self.checks)

    def as_dict(self) -> Dict[str, Any]:
        return {"scenario": self.name, "ok": self.ok, "runtime_s": round(self.runtime, 2),
                "error": self.error, "checks": self.checks, "notes": self.notes,
                "evidence": self.evidence}


# ---- scenarios ---------------------------------------------------------------------
def _rig(**kw: Any):
    from ..rig import Rig
    return Rig(prefix="emptcp-demo", **kw)


def _backup(res: Result, xdp: bool) -> None:
    """Download over two 40 Mbit/s paths; MP_PRIO(B) on path 1 moves the data to path 0."""
    from ..rig import PathSpec
    name = "backup-xdp" if xdp else "backup"
    with _rig(paths=[PathSpec(rate="40mbit"), PathSpec(rate="40mbit")]) as rig, \
            tempfile.TemporaryDirectory() as tmp:
        side = rig.server if xdp else rig.client
        pol = Policy(side, tmp, name)
        try:
            srv = rig.start_server()
            # a download that lasts until the measurements are done (not a fixed 6.5 s:
            # under emulation, as in the kernel matrix, an apply alone takes seconds)
            cli = rig.start_client(srv.port, forever=True, reverse=True, timeout=30)
            _wait(_both_paths_carry(rig, "server_tx", 256 << 10), 3)
            n0c, n0s = rig.client.nstat(), rig.server.nstat()
            before = _window(rig, 1.5)
            prio = _nstat_moved(rig.server, "MPTcpExtMPPrioRx")
            res.evidence["apply_s"] = round(pol.apply(name, rig), 3)
            _wait(prio, 3)
            # what path 1 queued before the flag drains while path 0 moves 1 MiB
            p0 = rig.paths[0]
            b0 = p0.bytes()["server_tx"]
            _wait(lambda: p0.bytes()["server_tx"] - b0 > 1 << 20, 3)
            after = _window(rig, 1.5)
            n1c, n1s = rig.client.nstat(), rig.server.nstat()
            srv_flows, cli_flows = _flows(rig.server), _flows(rig.client)
            counters = pol.counters()
        finally:
            pol.detach()
            srv_rep = srv.stop()        # the download ends when the server stops sending
        rep = cli.result(20)
        p1 = rig.paths[1].client_addr
        res.evidence.update(
            server_tx_bytes_before={"path0": before[0]["server_tx"], "path1": before[1]["server_tx"]},
            server_tx_bytes_after={"path0": after[0]["server_tx"], "path1": after[1]["server_tx"]},
            client_mptcp_delta=_delta(n0c, n1c), server_mptcp_delta=_delta(n0s, n1s),
            server_subflows=srv_flows, client_subflows=cli_flows, stage_counters=counters,
            transfer={"intact": rep.get("intact"), "bytes": rep.get("bytes_received")})
        prio = n1s.get("MPTcpExtMPPrioRx", 0) - n0s.get("MPTcpExtMPPrioRx", 0)
        res.check(prio > 0, "server received MP_PRIO (MPTcpExtMPPrioRx)", f"+{prio}")
        b = [f for f in srv_flows if f["remote"].startswith(p1 + ":")]
        res.check(bool(b) and "B" in b[0]["flags"],
                  f"server's subflow to {p1} is backup (ss flag B)", b[0]["flags"] if b else "no subflow")
        s_before, s_after = _share(before, "server_tx", 1), _share(after, "server_tx", 1)
        res.check(s_before >= 0.2, "before: path 1 carried data", f"{s_before:.0%} of bytes")
        res.check(s_after <= 0.05, "after: path 1 carries (almost) nothing, path 0 the rest",
                  f"{s_after:.1%} of bytes")
        _check_ran_and_intact(res, counters, "path1-backup", srv_rep, rep)


def _check_checksums(res: Result, client: tuple[dict, dict], server: tuple[dict, dict],
                     pkts: list, bad: list) -> None:
    """Both oracles: the kernels (offloads off, so they validate) and tshark's capture."""
    csum = sum(after.get("TcpInCsumErrors", 0) - before.get("TcpInCsumErrors", 0)
               for before, after in (client, server))
    res.check(csum == 0, "kernel validated every checksum (offloads off): TcpInCsumErrors +0",
              csum)
    res.check(len(pkts) > 0 and not bad, "tshark: all captured checksums good",
              f"{len(pkts)} packets, {len(bad)} bad")


def _recv_win(res: Result) -> None:
    """Upload over two 200 Mbit/s paths, offloads off (the kernel validates checksums).
    Phase 1: the server's path-1 ACKs advertise window ${window}; phase 2: every path does.

    Linux MPTCP shares one receive window per connection (RFC 8684 3.3.5): when one
    subflow advertises less than the connection's window, the sender raises that
    subflow's snd_wnd to the connection window (MPTcpExtSndWndShared counts it), so a
    one-path clamp is visible on the wire but does not slow that path; clamping every
    path does slow the connection."""
    from ..rig import PathSpec
    w = 16
    with _rig(paths=[PathSpec(rate="200mbit", offload=False),
                     PathSpec(rate="200mbit", offload=False)]) as rig, \
            tempfile.TemporaryDirectory() as tmp:
        pol = Policy(rig.server, tmp, "recv-win")
        cap = rig.server.capture(rig.paths[1].server_if, "tcp", snaplen=96)
        cli = None
        try:
            srv = rig.start_server()
            # an upload that lasts until the measurements end (two applies under emulation
            # take seconds each; a fixed-length transfer ended before them)
            cli = rig.start_client(srv.port, forever=True, timeout=_t(15))
            _wait(_both_paths_carry(rig, "client_tx", 1 << 20), 3)
            n0c, n0s = rig.client.nstat(), rig.server.nstat()
            win = {"no policy": _window(rig, 1.5)}
            pol.apply("recv-win", rig, window=w)
            cap.start()
            _wait(lambda: pol.counters().get("path1-small-window", {})
                  .get("a1:set_recv_win", 0) > 50, 3)   # the clamp is on path 1's ACKs
            m0 = rig.client.nstat()
            win["path 1 only"] = _window(rig, 1.2)
            m1 = rig.client.nstat()
            cap.stop()
            ss_c = {e.local: {"snd_wnd": e.info.get("snd_wnd"), "wscale": e.info.get("wscale"),
                              "rtt": e.info.get("rtt")} for e in rig.client.subflows()}
            c1 = pol.counters()
            pol.apply("recv-win-all", rig, window=w)
            _wait(lambda: all(pol.counters().get(f"small-window-{i}", {})
                              .get("a1:set_recv_win", 0) > 50 for i in (0, 1)), 3)
            win["every path"] = _window(rig, 1.2)
            n1c, n1s = rig.client.nstat(), rig.server.nstat()
            counters = {**c1, **pol.counters()}
        finally:
            pol.detach()
            rep = cli.stop(_t(20)) if cli else {}
        pkts = cap.packets("tcp")
        bad = [p.number for p in pkts if p.tcp_csum_status == 0 or p.ip_csum_status == 0]
        acks = [p for p in pkts if p.dst == rig.paths[1].client_addr and not p.tcp_flags & 0x2]
        rate = {k: [round(x[i]["client_tx"] * 8 / (1.5 if k == "no policy" else 1.2) / 1e6, 1)
                    for i in range(2)] for k, x in win.items()}
        shared = m1.get("MPTcpExtSndWndShared", 0) - m0.get("MPTcpExtSndWndShared", 0)
        res.evidence.update(
            window=w, client_tx_mbit_per_s_path0_path1=rate,
            client_subflows_during_path1_clamp=ss_c, client_SndWndShared_during_path1_clamp=shared,
            client_delta=_delta(n0c, n1c), server_delta=_delta(n0s, n1s), stage_counters=counters,
            capture={"packets": len(pkts), "bad_checksums": len(bad),
                     "path1_server_windows": sorted({p.window for p in acks})[:8]},
            transfer={"intact": rep.get("intact"), "bytes": rep.get("bytes_sent")})
        res.check(bool(acks) and {p.window for p in acks} == {w},
                  f"tshark: every server ACK on path 1 advertises window {w}",
                  f"{len(acks)} ACKs, windows {sorted({p.window for p in acks})[:8]}")
        _check_checksums(res, (n0c, n1c), (n0s, n1s), pkts, bad)
        res.check(shared > 0, "path-1 clamp: the sender overrides a per-subflow window with "
                  "the connection's (MPTcpExtSndWndShared)", f"+{shared}")
        t0, t2 = sum(rate["no policy"]), sum(rate["every path"])
        res.check(t2 < 0.5 * t0, f"window {w} on every path: the sender slows down",
                  f"{t0:.0f} -> {t2:.0f} Mbit/s")
        res.check(bool(rep.get("intact")), "transfer intact", f"{rep.get('bytes_sent')} bytes")


def _recv_win_delay(res: Result, tcp: bool = False, window_bytes: int = 128 * 1024,
                    delay_ms: float = 20.0, rate: str = "60mbit") -> None:
    """Upload over ONE path with a userspace delay line (RTT ~2 x ``delay_ms``), shaped to
    ``rate``, offloads off.  A veth path has microsecond RTTs (flows are CPU-bound, never
    window-limited) and Linux MPTCP shares one window per connection, so proportionality
    is shown on a single-path connection (MPTCP, or plain TCP with ``tcp``): the server's
    ACKs advertise a window of ``window_bytes`` (raw field = bytes >> the receiver's
    wscale), then half of it.  Window-limited, the sender's rate is ~window / RTT, so it
    must halve."""
    from ..rig import PathSpec
    with _rig(paths=[PathSpec(rate=rate, offload=False, delay_ms=delay_ms)]) as rig, \
            tempfile.TemporaryDirectory() as tmp:
        path = rig.paths[0]
        pol = Policy(rig.server, tmp, "recv-win-delay")
        cap = rig.server.capture(path.server_if, "tcp", snaplen=96)
        flows = (lambda side: side.ss()) if tcp else (lambda side: side.subflows())

        def conn(side):
            for e in flows(side):
                if e.info.get("wscale"):
                    return e
            return None

        def rate_of(seconds: float) -> Dict[str, float]:
            b0 = path.bytes()
            time.sleep(seconds)
            b1 = path.bytes()
            return {k: round((b1[k] - b0[k]) * 8 / seconds / 1e6, 2)
                    for k in ("client_tx", "server_rx")}
        try:
            srv = rig.start_server(tcp=tcp)
            cli = rig.start_client(srv.port, duration=7.0, timeout=20, tcp=tcp)
            _wait(lambda: conn(rig.client), 3)
            n0c, n0s = rig.client.nstat(), rig.server.nstat()
            phases: Dict[str, Any] = {"no policy": {"mbit_per_s": rate_of(1.0)}}
            e = conn(rig.client)
            if e is None:
                raise RuntimeError("no connection in ss on the client")
            wscale = int(e.info["wscale"].split(",")[0])   # the sender's snd_wscale
            rtt_ms = float(e.info.get("rtt", "0/0").split("/")[0])
            raw = max(2, window_bytes >> wscale)
            cap.start()
            for name, w in (("window W", raw), ("window W/2", raw // 2)):
                pol.apply("recv-win-delay", rig, window=w)
                # the sender runs on the new window (what was in flight has drained)
                _wait(lambda: (c := conn(rig.client)) is not None
                      and int(c.info.get("snd_wnd", 0)) == w << wscale, 3)
                r = rate_of(1.5)
                e = conn(rig.client)
                phases[name] = {"raw_window": w, "window_bytes": w << wscale, "mbit_per_s": r,
                                "client_snd_wnd": int(e.info.get("snd_wnd", 0)) if e else None,
                                "client_rtt_ms": float(e.info.get("rtt", "0/0").split("/")[0])
                                if e else None}
                prtt = phases[name]["client_rtt_ms"]
                phases[name]["window_over_rtt_mbit_per_s"] = (
                    round((w << wscale) * 8 / (prtt / 1e3) / 1e6, 2) if prtt else None)
            cap.stop()
            n1c, n1s = rig.client.nstat(), rig.server.nstat()
            counters = pol.counters()
        finally:
            pol.detach()
        rep = cli.result(20)
        pkts = cap.packets("tcp")
        bad = [p.number for p in pkts if p.tcp_csum_status == 0 or p.ip_csum_status == 0]
        acks = [p for p in pkts if p.dst == path.client_addr and not p.tcp_flags & 0x2]
        w1, w2 = phases["window W"], phases["window W/2"]
        ratio = (w1["mbit_per_s"]["client_tx"] / w2["mbit_per_s"]["client_tx"]
                 if w2["mbit_per_s"]["client_tx"] else float("inf"))
        free = phases["no policy"]["mbit_per_s"]["client_tx"]
        res.evidence.update(
            protocol="tcp" if tcp else "mptcp", delay_ms_each_way=delay_ms, rate=rate,
            rtt_ms=rtt_ms, wscale=wscale, phases=phases, ratio_W_over_half=round(ratio, 3),
            client_delta=_delta(n0c, n1c), server_delta=_delta(n0s, n1s),
            stage_counters=counters,
            capture={"packets": len(pkts), "bad_checksums": len(bad),
                     "server_windows": sorted({p.window for p in acks})[:8]},
            transfer={"intact": rep.get("intact"), "bytes": rep.get("bytes_sent"),
                      "is_mptcp": (rep.get("mptcp") or {}).get("is_mptcp")})
        res.check(30 < rtt_ms < 60, f"delay line: RTT ~{2 * delay_ms:.0f} ms", f"{rtt_ms} ms")
        res.check(w1["client_snd_wnd"] == w1["window_bytes"]
                  and w2["client_snd_wnd"] == w2["window_bytes"],
                  "the sender's snd_wnd is the clamped window (raw << wscale)",
                  f"{w1['client_snd_wnd']}, {w2['client_snd_wnd']}")
        res.check(w1["mbit_per_s"]["client_tx"] < 0.8 * free,
                  "window W is below the unclamped rate (window-limited regime)",
                  f"{w1['mbit_per_s']['client_tx']} < 0.8 x {free} Mbit/s")
        res.check(1.6 <= ratio <= 2.5, "halving the window halves the sender's throughput",
                  f"{w1['mbit_per_s']['client_tx']} / {w2['mbit_per_s']['client_tx']} Mbit/s"
                  f" = {ratio:.2f}")
        res.check({p.window for p in acks} >= {raw, raw // 2},
                  f"tshark: server ACKs advertise raw windows {raw} then {raw // 2}",
                  f"{len(acks)} ACKs, windows {sorted({p.window for p in acks})[:8]}")
        _check_checksums(res, (n0c, n1c), (n0s, n1s), pkts, bad)
        if not tcp:
            res.check(bool(res.evidence["transfer"]["is_mptcp"]), "the connection is MPTCP",
                      res.evidence["transfer"]["is_mptcp"])
        res.check(bool(rep.get("intact")), "transfer intact", f"{rep.get('bytes_sent')} bytes")


def _signaled(rig: Any, port: int) -> int:
    """Addresses the server's MPTCP connection on ``port`` announced (ADD_ADDR sent), as
    the kernel reports it (``ss -M``: add_addr_signal; on every kernel, unlike the
    MPTcpExtAddAddrTx counter, which Linux 6.1 does not have)."""
    return max((int(e.info.get("add_addr_signal") or 0) for e in rig.server.ss()
                if e.netid == "mptcp" and e.lport == port), default=0)


def _rm_add_addr(res: Result, builtin: bool) -> None:
    """Server announces server_addr1 (signal endpoint). Connection 1 without the policy
    (control), connection 2 with it. Each upload lasts until its phase has seen what it
    needs (the announcement, then the join or 300 more packets): under emulation the
    kernel announced ~15 s after the connection started."""
    name = "rm-add-addr-tc" if builtin else "rm-add-addr"
    with _rig(paths=2, client_subflow=False, server_signal=True) as rig, \
            tempfile.TemporaryDirectory() as tmp:
        pol = Policy(rig.server if builtin else rig.client, tmp, name)
        a1 = rig.paths[1].server_addr
        phases = {}
        try:
            for phase in ("without policy", "with policy"):
                if phase == "with policy":
                    pol.apply(name, rig)
                n0c, n0s = rig.client.nstat(), rig.server.nstat()
                srv = rig.start_server()
                cli = rig.start_client(srv.port, forever=True, timeout=_t(10))
                try:
                    _wait(lambda: _signaled(rig, srv.port) > 0, 3)
                    signaled = _signaled(rig, srv.port)
                    if phase == "without policy":   # the client joins the announced address
                        _wait(lambda: [f for f in _flows(rig.client)
                                       if f["remote"].startswith(a1 + ":")], 3)
                    else:                           # the ADD_ADDR and 300 more packets arrived
                        c0 = rig.paths[0]
                        r0 = rig.client.link_stats(c0.client_if)[c0.client_if]["rx_packets"]
                        _wait(lambda: rig.client.link_stats(c0.client_if)[c0.client_if]
                              ["rx_packets"] - r0 > 300, 1.5)
                    flows = [f for f in _flows(rig.client) if f["remote"].endswith(f":{srv.port}")]
                finally:
                    rep = cli.stop(_t(15))
                    srv.results(_t(5))
                n1c, n1s = rig.client.nstat(), rig.server.nstat()
                phases[phase] = {"client_delta": _delta(n0c, n1c), "server_delta": _delta(n0s, n1s),
                                 "server_add_addr_signal": signaled,
                                 "client_subflows": flows, "intact": rep.get("intact"),
                                 "to_announced": [f for f in flows if f["remote"].startswith(a1 + ":")]}
            counters = pol.counters()
        finally:
            pol.detach()
        res.evidence.update(phases=phases, stage_counters=counters)
        w, p = phases["without policy"], phases["with policy"]
        res.check(w["client_delta"].get("MPTcpExtAddAddr", 0) > 0 and w["to_announced"],
                  "control: client got ADD_ADDR and opened a subflow to it",
                  f"AddAddr +{w['client_delta'].get('MPTcpExtAddAddr', 0)}, "
                  f"{len(w['to_announced'])} subflow(s) to {a1}")
        res.check(p["server_add_addr_signal"] > 0,
                  "with policy: server still sent ADD_ADDR (ss -M add_addr_signal)",
                  f"add_addr_signal {p['server_add_addr_signal']}")
        res.check(p["client_delta"].get("MPTcpExtAddAddr", 0) == 0 and not p["to_announced"],
                  "with policy: client never saw ADD_ADDR, no subflow to the announced address",
                  f"AddAddr +{p['client_delta'].get('MPTcpExtAddAddr', 0)}, "
                  f"{len(p['to_announced'])} subflow(s) to {a1}")
        res.check(bool(w["intact"] and p["intact"]), "both transfers intact")


def _no_mptcp(res: Result, xdp: bool) -> None:
    """Two services: connections to ${port} fall back to TCP, ${port2} stays MPTCP."""
    from ..rig import PathSpec
    name = "no-mptcp-xdp" if xdp else "no-mptcp"
    # no client subflow endpoint: the MPTCP connection keeps its one subflow.  A kernel-PM
    # join during this upload met the Linux MP_JOIN race (tests/kernel_repro/mptcp_join_race.py:
    # the server reset the join, 1 of 50 runs), and the scenario is about MP_CAPABLE
    with _rig(paths=[PathSpec(offload=False), PathSpec(offload=False)],
              client_subflow=False) as rig, tempfile.TemporaryDirectory() as tmp:
        pol = Policy(rig.server if xdp else rig.client, tmp, name)
        try:
            legacy, other = rig.start_server(), rig.start_server()
            pol.apply(name, rig, port=legacy.port)
            n0c, n0s = rig.client.nstat(), rig.server.nstat()
            t0 = time.monotonic()
            # both clients stream until stopped below, after one ss snapshot taken once
            # both connections exist (the legacy one as a TCP socket, the other as an
            # MPTCP socket with its subflows).  Fixed-length transfers and a fixed 1.2 s
            # wait missed them when the loaded machine was slow to start the two client
            # processes (seen: ss empty, or one connection only; both transfers intact)
            c1 = rig.start_client(legacy.port, forever=True, timeout=_t(10))
            c2 = rig.start_client(other.port, forever=True, timeout=_t(10))
            deadline = t0 + _t(8.0)
            while True:
                ss_all = rig.client.ss()
                sub = {e.rport for e in ss_all if e.is_subflow and "flags:" in e.raw}
                # an MPTCP connection: an mptcp socket not marked "fallback" (the "subflows:"
                # key only appears while it has more than its first subflow)
                mp_sockets = {e.rport for e in ss_all if e.netid == "mptcp" and "fallback" not in e.info}
                tcp_ports = {e.rport for e in ss_all if e.netid == "tcp" and e.state == "ESTAB"}
                if ({legacy.port, other.port} <= tcp_ports and other.port in mp_sockets
                        and other.port in sub) or time.monotonic() > deadline:
                    break
                time.sleep(0.05)
            res.evidence["ss_snapshot_after_s"] = round(time.monotonic() - t0, 2)
            res.evidence["ss_client"] = [e.raw for e in ss_all]
            r1, r2 = c1.stop(_t(15)), c2.stop(_t(15))
            legacy.results(_t(5)), other.results(_t(5))
            n1c, n1s = rig.client.nstat(), rig.server.nstat()
            counters = pol.counters()
        finally:
            pol.detach()
        cd, sd = _delta(n0c, n1c), _delta(n0s, n1s)
        info = lambda r: {k: (r.get("mptcp") or {}).get(k) for k in ("is_mptcp", "fallback", "subflows")}
        # enough of each transfer's own report to tell a failed connection from bad bytes
        brief = lambda r: {k: r.get(k) for k in ("intact", "bytes_sent", "bytes_received", "error")}
        res.evidence.update(legacy_transfer=brief(r1), other_transfer=brief(r2))
        res.evidence.update(legacy_port=legacy.port, other_port=other.port, client_delta=cd,
                            server_delta=sd, legacy_conn=info(r1), other_conn=info(r2),
                            ss_mptcp_ports=sorted(p for p in mp_sockets if p),
                            ss_subflow_ports=sorted(p for p in sub if p), stage_counters=counters)
        fb = cd.get("MPTcpExtMPCapableFallbackSYNACK", 0) + sd.get("MPTcpExtMPCapableFallbackACK", 0)
        drop = cd.get("MPTcpExtMPCapableSYNTXDrop", 0)
        res.check(drop == 0, "the stripped SYN was accepted (no SYN retransmit / MPTCP blackhole "
                  "fallback: MPTcpExtMPCapableSYNTXDrop +0)", f"+{drop}")
        res.check(not r1.get("mptcp", {}).get("is_mptcp") and fb > 0,
                  f"port {legacy.port}: plain TCP (TCP_IS_MPTCP=0, fallback counters)",
                  f"fallback counters +{fb}: "
                  + json.dumps({k: v for k, v in {**cd, **sd}.items() if 'Fallback' in k}))
        res.check(legacy.port in tcp_ports and legacy.port not in mp_sockets
                  and other.port in mp_sockets,
                  f"ss -M: port {legacy.port} connected, no MPTCP connection for it, one for "
                  f"{other.port}", f"MPTCP {sorted(p for p in mp_sockets if p)}, TCP "
                  f"{sorted(p for p in tcp_ports if p)}")
        res.check(bool(r2.get("mptcp", {}).get("is_mptcp")) and other.port in sub,
                  f"port {other.port}: still MPTCP", info(r2))
        res.check(bool(r1.get("intact") and r2.get("intact")), "both transfers intact")


def _add_subflow(res: Result) -> None:
    """Userspace PM on the client; `emptcp run` serves add_subflow events."""
    import subprocess
    with _rig(paths=2, client_pm=1) as rig, tempfile.TemporaryDirectory() as tmp:
        srv = rig.start_server()
        path = os.path.join(tmp, "add-subflow.toml")
        with open(path, "w") as f:
            f.write(render("add-subflow", rig, port=srv.port))
        pin_root = f"/sys/fs/bpf/emptcp-demo-addsf-{uuid.uuid4().hex[:6]}"
        exe = [sys.executable, "-m", "emptcp"]
        daemon = rig.client.popen(exe + ["run", path, "--pin-root", pin_root, "--timeout", "20"],
                                  stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        try:
            line = daemon.stdout.readline()
            if "applied" not in line:
                raise RuntimeError(f"emptcp run did not start: {line}{daemon.stderr.read()}")
            n0c, n0s = rig.client.nstat(), rig.server.nstat()
            before = len(rig.client.subflows(srv.port))
            a1 = rig.paths[1].client_addr
            mine = lambda: [f for f in _flows(rig.client) if f["remote"].endswith(f":{srv.port}")]
            join_of = lambda fl: next((f for f in fl if f["local"].startswith(a1 + ":")), None)
            # long enough that the connection is still up when ss is read below
            cli = rig.start_client(srv.port, duration=5.0, timeout=12)
            flows: List[Dict[str, Any]] = []
            deadline = time.monotonic() + 2.5
            while time.monotonic() < deadline:       # the join appears (first as backup)
                flows = mine()
                if join_of(flows):
                    break
                time.sleep(0.05)
            in_use: List[Dict[str, Any]] = []
            deadline = time.monotonic() + 3.0
            while time.monotonic() < deadline:       # ... then is promoted and carries data
                in_use = mine()
                j = join_of(in_use)
                if j is None or ("b" not in j["flags"] and j["bytes_sent"] > 1 << 20):
                    break
                time.sleep(0.05)
            res.evidence["client_subflows_in_use"] = in_use
            st = json.loads(rig.client.out(exe + ["status", "--json", "--pin-root", pin_root]))
            rep = cli.result(15)
            n1c, n1s = rig.client.nstat(), rig.server.nstat()
        finally:
            with contextlib.suppress(Exception):
                daemon.send_signal(signal.SIGTERM)
                out, err = daemon.communicate(timeout=10)
                res.evidence["daemon_output"] = (out + err).strip().splitlines()[-5:]
            with contextlib.suppress(Exception):
                from ..runtime import api
                api.detach(pin_root=pin_root, all=True)
        counters = _action_packets(st)
        cd, sd = _delta(n0c, n1c), _delta(n0s, n1s)
        res.evidence.update(client_subflows=flows, client_delta=cd, server_delta=sd,
                            stage_counters=counters, subflows_before=before,
                            transfer={"intact": rep.get("intact"), "mptcp": rep.get("mptcp")})
        joined = [f for f in flows if f["local"].startswith(a1 + ":") and "j" in f["flags"].lower()]
        res.check(bool(joined), f"ss -tiM: second subflow from {a1} (MP_JOIN)",
                  [f"{f['local']} flags:{f['flags']}" for f in flows])
        res.check(cd.get("MPTcpExtMPJoinSynAckRx", 0) > 0 and sd.get("MPTcpExtMPJoinSynRx", 0) > 0,
                  "join counters moved", f"client MPJoinSynAckRx +{cd.get('MPTcpExtMPJoinSynAckRx', 0)}, "
                  f"server MPJoinSynRx +{sd.get('MPTcpExtMPJoinSynRx', 0)}")
        # opened as backup, promoted once the server has attached it (emptcp_mptcp.pm)
        res.check(sd.get("MPTcpExtMPJoinSynBackupRx", 0) == 1 and cd.get("MPTcpExtMPPrioTx", 0) == 1
                  and sd.get("MPTcpExtMPPrioRx", 0) == 1,
                  "joined as backup, then promoted (MPJoinSynBackupRx, MPPrioTx/Rx +1)",
                  {k: v for k, v in {**cd, **sd}.items() if "Prio" in k or "Backup" in k})
        j = next((f for f in in_use if f["local"].startswith(a1 + ":")), None)
        res.check(j is not None and "b" not in j["flags"] and j["bytes_sent"] > 1 << 20,
                  "the new subflow carries data (ss bytes_sent, no backup flag)",
                  f"{j['flags']} {j['bytes_sent']} bytes" if j else "gone")
        bad = {f"{side} {k}": d.get(k, 0) for side, d in (("client", cd), ("server", sd))
               for k in ("MPTcpExtDSSNotMatching", "MPTcpExtMPRstTx", "MPTcpExtMPRstRx")}
        res.check(not any(bad.values()), "no subflow reset (DSSNotMatching, MPRstTx/Rx +0 both sides)",
                  bad)
        res.check(bool(rep.get("intact")), "transfer intact", f"{rep.get('bytes_sent')} bytes")


#: peer-side settings of the metered scenario's server: a subflow is stale (and a backup
#: one used) after 1 retransmission timeout without progress instead of 4, and the RTO
#: backs off to at most 1 s, so the preferred path's return is noticed within about 1 s
METERED_SERVER_SYSCTLS = {"net.mptcp.stale_loss_cnt": 1, "net.ipv4.tcp_rto_max_ms": 1000}


def _metered(res: Result) -> None:
    """Path 1 metered: its subflow is made backup as it joins (``emptcp run``, path-manager
    events); path 0 goes down mid-download and comes back."""
    import subprocess
    from ..rig import PathSpec
    with _rig(paths=[PathSpec(rate="40mbit"), PathSpec(rate="40mbit")]) as rig, \
            tempfile.TemporaryDirectory() as tmp:
        for k, v in METERED_SERVER_SYSCTLS.items():
            rig.server.sysctl(k, v)
        p0, p1 = rig.paths
        path = os.path.join(tmp, "metered.toml")
        with open(path, "w") as f:
            f.write(render("metered", rig))
        pin_root = f"/sys/fs/bpf/emptcp-demo-metered-{uuid.uuid4().hex[:6]}"
        exe = [sys.executable, "-m", "emptcp"]
        daemon = rig.client.popen(exe + ["-v", "run", path, "--pin-root", pin_root,
                                         "--timeout", str(int(_t(25)))],
                                  stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        srv = cli = None
        rx = lambda i: rig.paths[i].bytes()["client_rx"]
        link = lambda state: rig.client.run(["ip", "link", "set", p0.client_if, state])
        try:
            line = daemon.stdout.readline()
            if "applied" not in line:
                raise RuntimeError(f"emptcp run did not start: {line}{daemon.stderr.read()}")
            n0c, n0s = rig.client.nstat(), rig.server.nstat()
            srv = rig.start_server()
            cli = rig.start_client(srv.port, forever=True, reverse=True, timeout=30)
            prio = _wait(_nstat_moved(rig.server, "MPTcpExtMPPrioRx"), 5)
            # what path 1 received before the flag took effect drains while path 0 moves 1 MiB
            b0 = rx(0)
            _wait(lambda: rx(0) - b0 > 1 << 20, 3)
            up = _window(rig, 1.5)
            srv_flows = _flows(rig.server)
            entries = json.loads(rig.client.out(exe + ["flow", "list", "metered", "--json",
                                                       "--pin-root", pin_root]) or "[]")
            # the preferred path goes down mid-transfer ...
            link("down")
            t_down, b1 = time.monotonic(), rx(1)
            _wait(lambda: rx(1) - b1 > 256 << 10, 5)
            failover_s = time.monotonic() - t_down
            down = _window(rig, 1.0)
            # ... and comes back
            link("up")
            t_up, b0 = time.monotonic(), rx(0)
            _wait(lambda: rx(0) - b0 > 256 << 10, 5)
            back_s = time.monotonic() - t_up
            b0 = rx(0)
            _wait(lambda: rx(0) - b0 > 1 << 20, 3)
            after = _window(rig, 1.0)
            n1c, n1s = rig.client.nstat(), rig.server.nstat()
            counters = _action_packets(json.loads(rig.client.out(
                exe + ["status", "--json", "--pin-root", pin_root])))
        finally:
            with contextlib.suppress(Exception):
                link("up")
            srv_rep = srv.stop() if srv is not None else []
            rep = cli.result(20) if cli is not None else {}
            with contextlib.suppress(Exception):
                daemon.send_signal(signal.SIGTERM)
                out, err = daemon.communicate(timeout=10)
                res.evidence["daemon_output"] = [ln for ln in (out + err).splitlines()
                                                 if "metered:" in ln][-4:]
            with contextlib.suppress(Exception):
                from ..runtime import api
                api.detach(pin_root=pin_root, all=True)
        share = lambda win: {"path0": win[0]["client_rx"], "path1": win[1]["client_rx"]}
        res.evidence.update(
            client_rx_bytes_both_up=share(up), client_rx_bytes_path0_down=share(down),
            client_rx_bytes_path0_back=share(after), failover_s=round(failover_s, 2),
            return_s=round(back_s, 2), selector_entries=entries, server_subflows=srv_flows,
            client_mptcp_delta=_delta(n0c, n1c), server_mptcp_delta=_delta(n0s, n1s),
            stage_counters=counters, server_sysctls=METERED_SERVER_SYSCTLS,
            transfer={"intact": rep.get("intact"), "bytes": rep.get("bytes_received")})
        res.check(bool(prio), "server received MP_PRIO (MPTcpExtMPPrioRx)",
                  f"+{n1s.get('MPTcpExtMPPrioRx', 0) - n0s.get('MPTcpExtMPPrioRx', 0)}")
        b = [f for f in srv_flows if f["remote"].startswith(p1.client_addr + ":")]
        res.check(bool(b) and "B" in b[0]["flags"],
                  f"server's subflow to {p1.client_addr} is backup (ss flag B)",
                  b[0]["flags"] if b else "no subflow")
        res.check(len(entries) == 1 and entries[0].get("local_addr") == p1.client_addr,
                  "the selector holds that one subflow (its 4-tuple, added on sub_established)",
                  entries)
        s_up, s_down, s_after = (_share(w, "client_rx", 1) for w in (up, down, after))
        res.check(s_up < 0.01, "both paths up: the metered path carries < 1 %", f"{s_up:.2%}")
        res.check(failover_s < 2 and s_down > 0.95,
                  "path 0 down: traffic on the metered path within 2 s, > 95 %",
                  f"after {failover_s:.2f} s, {s_down:.1%}")
        res.check(back_s < 2 and s_after < 0.05, "path 0 back: traffic returns within 2 s",
                  f"after {back_s:.2f} s; metered path {s_after:.1%} afterwards")
        _check_ran_and_intact(res, counters, "metered", srv_rep, rep)


def _selectors(res: Result) -> None:
    with _rig(paths=2) as rig, tempfile.TemporaryDirectory() as tmp:
        pol = Policy(rig.server, tmp, "selectors")
        srv_a, srv_b = rig.start_server(), rig.start_server()
        port3 = rig.port()
        try:
            pol.apply("selectors", rig, port=srv_a.port, port2=srv_b.port, port3=port3)
            steps = {}
            c0 = pol.counters()
            cb = rig.start_client(srv_b.port, nbytes=4 << 20, timeout=10)
            rep_b = cb.result(15)
            srv_b.results(5)
            c1 = pol.counters()
            l0 = rig.server.link_stats()
            ca = rig.start_client(srv_a.port, nbytes=4 << 20, timeout=10)
            rep_a = ca.result(15)
            srv_a.results(5)
            c2 = pol.counters()
            l1 = rig.server.link_stats()
            cc = rig.start_client(port3, nbytes=1 << 16, timeout=1.5)
            try:
                rep_c = cc.result(10)
            except RuntimeError as e:   # connect() timed out: no report
                rep_c = {"intact": False, "error": str(e).strip().splitlines()[-1]}
            c3 = pol.counters()
        finally:
            pol.detach()
        diff = lambda a, b: {p: {k: b[p][k] - a.get(p, {}).get(k, 0) for k in b[p]} for p in b}
        s0, s1 = rig.paths[0].server_if, rig.paths[1].server_if
        rx = {s: l1[s]["rx_packets"] - l0[s]["rx_packets"] for s in (s0, s1)}
        steps = {"control flow (port %d)" % srv_b.port: diff(c0, c1),
                 "selected flow (port %d)" % srv_a.port: diff(c1, c2),
                 "blocked flow (port %d)" % port3: diff(c2, c3)}
        res.evidence.update(stage_counters_per_step=steps, server_rx_packets_flow_a=rx,
                            control={"intact": rep_b.get("intact"), "bytes": rep_b.get("bytes_sent")},
                            selected={"intact": rep_a.get("intact")},
                            blocked={"intact": rep_c.get("intact"), "error": rep_c.get("error")})
        ctl, sel, blk = steps.values()
        g = lambda d, p, k: d.get(p, {}).get(k, 0)
        res.check(g(ctl, "by-service", "a0:count") == 0 and g(ctl, "blocked", "a0:count") == 0
                  and rep_b.get("intact"), "control flow: no service policy acted, transfer intact",
                  ctl)
        res.check(g(sel, "by-service", "a0:count") > 100 and g(sel, "blocked", "a0:count") == 0,
                  "service selector: counted the selected flow only",
                  f"{g(sel, 'by-service', 'a0:count')} packets (server path-0 rx {rx[s0]})")
        j = g(sel, "joins", "a0:count"), g(ctl, "joins", "a0:count")
        res.check(all(1 <= x <= 6 for x in j) and rx[s1] > 50,
                  "mptcp_subtype=MP_JOIN: only the join handshake of each connection",
                  f"{j[1]} and {j[0]} packets, while path 1 received {rx[s1]} packets")
        res.check(all(g(d, "nobody", "a0:count") == 0 for d in steps.values()),
                  "ip_pair 192.0.2.0/24: selected nothing")
        res.check(g(blk, "blocked", "a1:drop") >= 1 and not rep_c.get("intact"),
                  f"service {port3}: dropped, connection failed",
                  f"{g(blk, 'blocked', 'a1:drop')} SYN(s) dropped")


def _mixed(res: Result, reapply: int = 50) -> None:
    from ..rig import PathSpec
    with _rig(paths=[PathSpec(offload=False), PathSpec(offload=False)]) as rig, \
            tempfile.TemporaryDirectory() as tmp:
        pol = Policy(rig.client, tmp, "mixed")
        times = []
        try:
            srv = rig.start_server()
            n0c, n0s = rig.client.nstat(), rig.server.nstat()
            # a download: the client's path-1 egress carries ACKs, where MP_PRIO and the
            # receive window belong (growing a full-MTU data segment by 4 bytes on TC
            # egress would exceed the veth MTU and be dropped)
            cli = rig.start_client(srv.port, duration=4.0, reverse=True, timeout=20)
            _wait(lambda: len(rig.client.subflows(srv.port)) >= 2, 2)
            totals: Dict[str, int] = {}
            for i in range(reapply):
                for k, v in pol.counters().get("mixed", {}).items():   # before the flip resets them
                    totals[k] = totals.get(k, 0) + v
                time.sleep(0.03)
                times.append(pol.apply("mixed", rig, backup=bool(i % 2),
                                       window=(512, 1024, 4096, 65535)[i % 4]))
            p0 = rig.paths[0]
            b0 = p0.bytes()["server_tx"]   # the download goes on after the last flip
            _wait(lambda: p0.bytes()["server_tx"] - b0 > 1 << 20, 1)
            counters = pol.counters()
            for k, v in counters.get("mixed", {}).items():
                totals[k] = totals.get(k, 0) + v
        finally:
            pol.detach()
        rep = cli.result(20)
        sres = srv.results(5)
        rep["bytes_sent"] = sres[0].get("bytes_sent", 0) if sres else 0
        rep["intact"] = bool(rep.get("intact")) and rep["bytes_sent"] == rep.get("bytes_received")
        n1c, n1s = rig.client.nstat(), rig.server.nstat()
        cd, sd = _delta(n0c, n1c), _delta(n0s, n1s)
        res.evidence.update(reapplies=len(times), apply_s_max=round(max(times), 3),
                            apply_s_mean=round(sum(times) / len(times), 3),
                            stage_counters_all_generations=totals, client_delta=cd, server_delta=sd,
                            transfer={"intact": rep.get("intact"), "bytes": rep.get("bytes_sent"),
                                      "received": rep.get("bytes_received")})
        res.check(len(times) == reapply, f"re-applied {reapply} times with changing parameters")
        res.check(bool(rep.get("intact")) and rep.get("bytes_sent", 0) > 0,
                  "bulk transfer complete, every byte verified", f"{rep.get('bytes_sent')} bytes")
        rst = cd.get("MPTcpExtMPRstRx", 0) + sd.get("MPTcpExtMPRstRx", 0)
        res.check(rst == 0 and cd.get("TcpInCsumErrors", 0) == 0 and sd.get("TcpInCsumErrors", 0) == 0,
                  "no reset, no checksum error", f"MPRstRx +{rst}, TcpInCsumErrors client "
                  f"+{cd.get('TcpInCsumErrors', 0)} server +{sd.get('TcpInCsumErrors', 0)}")
        res.check(totals.get("a1:set_flow_priority", 0) > 0 and totals.get("a2:set_recv_win", 0) > 0,
                  "every action ran (summed over the generations)", totals)


@dataclass
class Scenario:
    name: str
    description: str
    run: Callable[[Result], None]
    needs_plugin: bool = True


SCENARIOS: Dict[str, Scenario] = {s.name: s for s in [
    Scenario("backup", "set_flow_priority backup=true on path 1 (TC egress, client): data "
             "moves to path 0", lambda r: _backup(r, False)),
    Scenario("backup-xdp", "the same with XDP on the server's path-1 interface",
             lambda r: _backup(r, True)),
    Scenario("recv-win", "set_recv_win (TC egress, server) on path 1, then on every path: "
             "windows on the wire, checksums valid, sender slows", _recv_win, needs_plugin=False),
    Scenario("recv-win-delay", "set_recv_win W then W/2 on a 40 ms-RTT path (userspace "
             "delay line): the window-limited sender's throughput halves, checksums valid",
             _recv_win_delay, needs_plugin=False),
    Scenario("rm-add-addr", "rm_add_addr (XDP, client): the server's ADD_ADDR never arrives",
             lambda r: _rm_add_addr(r, False)),
    Scenario("rm-add-addr-tc", "tcp_opt_del kind=30 subtype=3 (TC egress, server): the same "
             "with a built-in action", lambda r: _rm_add_addr(r, True), needs_plugin=False),
    Scenario("no-mptcp", "rm_mp_capable on one service (TC egress, client): plain TCP there, "
             "MPTCP elsewhere", lambda r: _no_mptcp(r, False)),
    Scenario("no-mptcp-xdp", "rm_mp_capable on one service (XDP, server)",
             lambda r: _no_mptcp(r, True)),
    Scenario("add-subflow", "userspace PM + `emptcp run`: emptcp opens the second subflow",
             _add_subflow),
    Scenario("metered", "`emptcp run`: subflows over the metered path 1 become backup as "
             "they join (MP_PRIO per subflow); path 0 down -> failover, back -> return",
             _metered),
    Scenario("selectors", "service / mptcp_subtype / ip_pair select only their flows "
             "(built-ins)", _selectors, needs_plugin=False),
    Scenario("mixed", "selector+count+set_flow_priority+set_recv_win re-applied 50 times "
             "during a bulk transfer", _mixed),
]}


def list_scenarios() -> List[tuple]:
    return [(s.name, s.description) for s in SCENARIOS.values()]


class _Timeout(Exception):
    pass


def run_scenario(name: str, time_limit: float = TIME_LIMIT) -> Result:
    """Run one scenario; never raises for scenario failures (see ``Result.error``)."""
    res = Result(name)
    sc = SCENARIOS.get(name)
    if sc is None:
        res.error = f"unknown scenario {name!r} (one of {', '.join(SCENARIOS)})"
        return res
    if os.geteuid() != 0:
        res.error = "the demo needs root (network namespaces, BPF)"
        return res
    if sc.needs_plugin and not plugin_installed():
        res.error = ("this scenario needs the emptcp-mptcp plugin: "
                     "pip install plugins/emptcp-mptcp")
        return res
    if not os.path.ismount("/sys/fs/bpf"):
        import subprocess
        subprocess.run(["mount", "-t", "bpf", "bpf", "/sys/fs/bpf"], check=False)
    use_alarm = hasattr(signal, "SIGALRM") and _main_thread()
    if use_alarm:
        def on_alarm(signum, frame):
            raise _Timeout()
        old = signal.signal(signal.SIGALRM, on_alarm)
        signal.setitimer(signal.ITIMER_REAL, time_limit + 15)  # hard stop incl. teardown
    global _slack
    _slack = max(1.0, time_limit / TIME_LIMIT)
    t0 = time.monotonic()
    try:
        sc.run(res)
    except _Timeout:
        res.error = f"timed out after {time_limit + 15:.0f} s (everything was torn down)"
    except Exception as e:
        res.error = f"{type(e).__name__}: {e}"
    finally:
        if use_alarm:
            signal.setitimer(signal.ITIMER_REAL, 0)
            signal.signal(signal.SIGALRM, old)
    res.runtime = time.monotonic() - t0
    res.check(res.runtime < time_limit, f"runtime under {time_limit:.0f} s", f"{res.runtime:.1f} s")
    return res


def _main_thread() -> bool:
    import threading
    return threading.current_thread() is threading.main_thread()


def _print(res: Result, out=sys.stdout) -> None:
    w = out.write
    w("\n== evidence ==\n")
    for k, v in res.evidence.items():
        w(f"  {k}: {json.dumps(v, default=str)}\n")
    w("\n== checks ==\n")
    for c in res.checks:
        w(f"  [{'ok' if c['ok'] else 'FAIL'}] {c['what']}" + (f": {c['detail']}" if c["detail"] else "")
          + "\n")
    for n in res.notes:
        w(f"  note: {n}\n")
    if res.error:
        w(f"\nerror: {res.error}\n")
    w(f"\nscenario {res.name}: {'PASSED' if res.ok else 'FAILED'} in {res.runtime:.1f} s\n")


def run_demo(name: Optional[str] = None, as_json: bool = False) -> int:
    notes = []
    name = name or DEFAULT
    if name == DEFAULT and not plugin_installed():
        notes.append(f"the emptcp-mptcp plugin is not installed (pip install plugins/emptcp-mptcp):"
                     f" running the built-in scenario {FALLBACK!r} instead of {DEFAULT!r}")
        name = FALLBACK
    sc = SCENARIOS.get(name)
    if not as_json:
        for n in notes:
            print(f"note: {n}")
        if sc:
            print(f"emptcp demo {name}: {sc.description}")
            print(f"policy template: {scenario_path(name)}; building the rig...", flush=True)
    try:
        res = run_scenario(name)
    except KeyboardInterrupt:
        print("interrupted; rig and pins were removed", file=sys.stderr)
        return 130
    res.notes[:0] = notes
    if as_json:
        print(json.dumps(res.as_dict(), indent=2, default=str))
    else:
        _print(res)
    return 0 if res.ok else 1
