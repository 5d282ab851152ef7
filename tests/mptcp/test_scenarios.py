"""End-to-end MPTCP acceptance: the policies of every `emptcp demo` scenario (the shipped
templates) on real MPTCP connections between rig namespaces, judged by the kernel and
the wire -- nstat MPTcpExt*/Tcp* deltas, ``ss -tiM`` subflow flags, interface counters
(tests/kernel.py) and tshark on a capture -- never by emptcp.cli.demo's own checks.

Every wait is a condition with a deadline. Integrity, checksum and state assertions are
never retried; the one timing check (a throughput drop) is its own live_timing test.
"""
from __future__ import annotations

import json
import os
import signal
import subprocess
import sys

import pytest

from .. import kernel
from ..kernel import delta, wait_for
from .scenario import Policy, both_paths_carry, path_links, render, rig

pytestmark = pytest.mark.slow

MP_PRIO, ADD_ADDR, MP_CAPABLE, MP_JOIN = 5, 3, 0, 1


def _share(win: list[dict[str, int]], key: str, i: int) -> float:
    tot = sum(w[key] for w in win)
    return win[i][key] / tot if tot else 0.0


def _window(rig_, side: str, since: list[dict[str, int]]) -> list[dict[str, int]]:
    return [kernel.link_delta(b, n) for b, n in zip(since, path_links(rig_, side))]


# ---- set_flow_priority: MP_PRIO(B) on path 1 moves a download to path 0 ------------------
@pytest.mark.parametrize("name", ["backup", "backup-xdp"])
def test_set_flow_priority_backup(mptcp_kernel, mptcp_plugin, tmp_path, name):
    from emptcp.rig import PathSpec
    with rig(paths=[PathSpec(rate="40mbit"), PathSpec(rate="40mbit")]) as r, \
            Policy(r.server if name == "backup-xdp" else r.client, tmp_path) as pol:
        p0, p1 = r.paths
        S = r.server.ns
        # on the server's path-1 interface: after XDP (ingress) and after TC (client egress)
        cap = r.server.capture(p1.server_if, f"tcp and src host {p1.client_addr}", snaplen=128)
        srv = r.start_server()
        cli = r.start_client(srv.port, forever=True, reverse=True, timeout=30)
        wait_for(lambda: len(kernel.subflows(S, srv.port)) >= 2, 10, "two subflows on the server")
        l0 = path_links(r, "server")
        wait_for(lambda: both_paths_carry(r, "server", "tx_bytes", l0, 512 << 10), 15,
                 "both paths carry the download")
        before = _window(r, "server", l0)
        n0s = kernel.nstat(S)
        cap.start()
        pol.apply(name, r)
        wait_for(lambda: delta(n0s, kernel.nstat(S), "MPTcpExtMPPrioRx") > 0, 10,
                 "the server receives MP_PRIO (MPTcpExtMPPrioRx)")
        flagged = wait_for(lambda: [s for s in kernel.subflows(S, srv.port)
                                    if s.remote == p1.client_addr and "B" in s.mptcp_flags],
                           10, f"ss: server's subflow to {p1.client_addr} flagged backup (B)")
        # let what was queued on path 1 before the flag drain: path 0 moves 1 MiB first
        l1 = path_links(r, "server")
        wait_for(lambda: kernel.link(S, p0.server_if)["tx_bytes"] - l1[0]["tx_bytes"] > 1 << 20,
                 15, "path 0 carries 1 MiB after the flag")
        l2 = path_links(r, "server")
        wait_for(lambda: kernel.link(S, p0.server_if)["tx_bytes"] - l2[0]["tx_bytes"] > 3 << 20,
                 15, "path 0 carries 3 MiB more")
        after = _window(r, "server", l2)
        cap.stop()
        stages = pol.stage_packets()
        srv_rep = srv.stop()        # a download ends when the server stops sending
        rep = cli.result(20)
        pkts = cap.packets("tcp")
    prio = [p for p in pkts if MP_PRIO in p.mptcp_subtypes]
    print(json.dumps({"before": before, "after": after, "flags": flagged[0].mptcp_flags,
                      "mp_prio_on_wire": len(prio), "stages": stages}, default=str))
    assert rep["intact"] and rep["bytes_received"] > 0, rep
    assert srv_rep and srv_rep[0].get("bytes_sent") == rep["bytes_received"], srv_rep
    assert prio and all(p.mptcp_backup == [1] for p in prio), \
        f"MP_PRIO on path 1's wire: {[(p.number, p.mptcp_backup) for p in prio][:5]}"
    assert _share(before, "tx_bytes", 1) >= 0.2, f"before: path 1 carried {before}"
    assert _share(after, "tx_bytes", 1) <= 0.05, f"after: path 1 still carried {after}"
    # the stage ran and its packets carry MP_PRIO(B) on the wire. (Its counter is not
    # compared with the wire count: with XDP on the server's veth the capture saw ~8 %
    # more MP_PRIO packets than the stage counted -- 489 vs 449, 106 vs 94 -- not yet
    # explained; with TC 87 vs 89 was seen once too.)
    assert stages["path1-backup"]["a1:set_flow_priority"] > 0 and prio, \
        (stages, f"{len(prio)} MP_PRIO packets on the wire")



# ---- set_recv_win on one path: windows on the wire, valid checksums, shared window -------
def test_set_recv_win_one_path(mptcp_kernel, tmp_path):
    """Upload over two paths, offloads off (the kernels validate every checksum); the
    server's path-1 ACKs advertise window 16. Linux MPTCP shares one receive window per
    connection, so the sender overrides that subflow's window (MPTcpExtSndWndShared)."""
    from emptcp.rig import PathSpec
    w = 16
    with rig(paths=[PathSpec(rate="200mbit"), PathSpec(rate="200mbit")]) as r, \
            Policy(r.server, tmp_path) as pol:
        p1 = r.paths[1]
        C, S = r.client.ns, r.server.ns
        cap = r.server.capture(p1.server_if, "tcp", snaplen=96)
        srv = r.start_server()
        cli = r.start_client(srv.port, forever=True, timeout=30)
        wait_for(lambda: len(kernel.subflows(C, srv.port)) >= 2, 10, "two subflows")
        l0 = path_links(r, "client")
        wait_for(lambda: both_paths_carry(r, "client", "tx_bytes", l0, 1 << 20), 15,
                 "both paths carry the upload")
        n0c, n0s = kernel.nstat(C), kernel.nstat(S)
        pol.apply("recv-win", r, window=w)
        cap.start()
        wait_for(lambda: delta(n0c, kernel.nstat(C), "MPTcpExtSndWndShared") > 0, 10,
                 "the sender overrides the clamped subflow window (MPTcpExtSndWndShared)")
        t0 = kernel.link(S, p1.server_if)["tx_packets"]
        wait_for(lambda: kernel.link(S, p1.server_if)["tx_packets"] - t0 > 500, 10,
                 "500 more packets (ACKs) leave the server on path 1")
        cap.stop()
        rep = cli.stop()
        n1c, n1s = kernel.nstat(C), kernel.nstat(S)
        pkts = cap.packets("tcp")
    # the server's packets to the client's path-1 address (the join goes to server_addr0)
    acks = [p for p in pkts if p.dst == p1.client_addr and not p.tcp_flags & 0x2]
    assert rep["intact"] and rep["bytes_sent"] > 0, rep
    assert acks and {p.window for p in acks} == {w}, sorted({p.window for p in acks})[:10]
    # tshark: every rewritten ACK verified good; nothing bad (data frames are truncated
    # by the snap length: unverified, and checked by the receiving kernel instead)
    assert all(p.checksums_ok for p in acks), [p.number for p in acks if not p.checksums_ok][:10]
    assert not [p.number for p in pkts if 0 in (p.tcp_csum_status, p.ip_csum_status)]
    assert delta(n0c, n1c, "TcpInCsumErrors") == 0 and delta(n0s, n1s, "TcpInCsumErrors") == 0
    assert delta(n0s, n1s, "MPTcpExtMPRstRx") == 0 and delta(n0c, n1c, "MPTcpExtMPRstRx") == 0


@pytest.mark.live_timing(reason="upload throughput with window 16 on every path vs none "
                                "(rates over 1 s on a shared 2-vCPU machine)")
def test_set_recv_win_every_path_slows_sender(mptcp_kernel, tmp_path, transfer_ledger):
    from emptcp.rig import PathSpec
    with rig(paths=[PathSpec(rate="200mbit"), PathSpec(rate="200mbit")]) as r, \
            Policy(r.server, tmp_path) as pol:
        C = r.client.ns
        srv = r.start_server()
        cli = r.start_client(srv.port, forever=True, timeout=30)
        try:
            wait_for(lambda: len(kernel.subflows(C, srv.port)) >= 2, 10, "two subflows")
            l0 = path_links(r, "client")
            wait_for(lambda: both_paths_carry(r, "client", "tx_bytes", l0, 1 << 20), 15,
                     "both paths carry the upload")
            free = kernel.rate(lambda: sum(x["tx_bytes"] for x in path_links(r, "client")), 1.0)
            pol.apply("recv-win-all", r, window=16)
            s0 = pol.stage_packets()
            wait_for(lambda: all(pol.stage_packets()[k]["a1:set_recv_win"]
                                 - s0[k]["a1:set_recv_win"] > 100 for k in s0), 10,
                     "both paths' ACKs rewritten")
            clamped = kernel.rate(lambda: sum(x["tx_bytes"] for x in path_links(r, "client")),
                                  1.0)
        finally:
            transfer_ledger.add(cli.stop())
    print(f"upload {free * 8 / 1e6:.0f} -> {clamped * 8 / 1e6:.0f} Mbit/s")
    assert clamped < 0.5 * free, f"{free * 8 / 1e6:.0f} -> {clamped * 8 / 1e6:.0f} Mbit/s"


# ---- ADD_ADDR removed: the client never learns the announced address --------------------
@pytest.mark.parametrize("name", ["rm-add-addr", "rm-add-addr-tc"])
def test_rm_add_addr(mptcp_kernel, mptcp_plugin, tmp_path, name):
    """The server announces server_addr1 (signal endpoint); connection 1 without the
    policy (control), connection 2 with it."""
    phases = {}
    with rig(paths=2, client_subflow=False, server_signal=True) as r, \
            Policy(r.client if name == "rm-add-addr" else r.server, tmp_path) as pol:
        p0, p1 = r.paths
        C, S = r.client.ns, r.server.ns
        for phase in ("control", "policy"):
            if phase == "policy":
                pol.apply(name, r)
            cap = r.client.capture(p0.client_if, "tcp", snaplen=128).start()
            n0c, n0s = kernel.nstat(C), kernel.nstat(S)
            srv = r.start_server()
            cli = r.start_client(srv.port, forever=True, timeout=30)
            wait_for(lambda: delta(n0s, kernel.nstat(S), "MPTcpExtAddAddrTx") > 0, 10,
                     "the server sends ADD_ADDR (MPTcpExtAddAddrTx)")
            if phase == "control":
                wait_for(lambda: [s for s in kernel.subflows(C, srv.port) if s.remote == p1.server_addr],
                         10, f"control: a subflow to the announced {p1.server_addr}")
            # the ADD_ADDR packet and 300 after it have reached the client's stack
            t0 = kernel.link(C, p0.client_if)["rx_packets"]
            wait_for(lambda: kernel.link(C, p0.client_if)["rx_packets"] - t0 > 300, 10,
                     "300 more packets reach the client")
            flows = kernel.subflows(C, srv.port)
            rep = cli.stop()
            srv.results(10)
            cap.stop()
            n1c, n1s = kernel.nstat(C), kernel.nstat(S)
            pkts = cap.packets("tcp")
            phases[phase] = {
                "intact": rep["intact"],
                "AddAddrTx": delta(n0s, n1s, "MPTcpExtAddAddrTx"),
                "AddAddr": delta(n0c, n1c, "MPTcpExtAddAddr"),
                "MPJoinSynTx": delta(n0c, n1c, "MPTcpExtMPJoinSynTx"),
                "to_announced": [f"{s.local}->{s.remote}" for s in flows
                                 if s.remote == p1.server_addr],
                "add_addr_on_wire": len([p for p in pkts if ADD_ADDR in p.mptcp_subtypes
                                         and p.dst == p0.client_addr])}
    print(json.dumps(phases))
    c, p = phases["control"], phases["policy"]
    assert c["intact"] and p["intact"], phases
    assert c["AddAddr"] > 0 and c["to_announced"] and c["add_addr_on_wire"] > 0, c
    assert p["AddAddrTx"] > 0, p
    assert p["AddAddr"] == 0 and p["MPJoinSynTx"] == 0 and not p["to_announced"], p
    assert p["add_addr_on_wire"] == 0, p


# ---- MP_CAPABLE removed on one service: plain TCP there, MPTCP elsewhere ----------------
@pytest.mark.parametrize("name", ["no-mptcp", "no-mptcp-xdp"])
def test_rm_mp_capable(mptcp_kernel, mptcp_plugin, tmp_path, name):
    """No client subflow endpoint: a kernel-PM join during this upload meets the Linux
    MP_JOIN race (tests/kernel_repro/mptcp_join_race.py) -- the server resets the join
    (1 of 50 demo runs), its ``subflows:`` count falls back to 0 within milliseconds, and
    a wait for it times out.  This test is about MP_CAPABLE, not joins."""
    from emptcp.rig import PathSpec
    with rig(paths=[PathSpec(), PathSpec()], client_subflow=False) as r, \
            Policy(r.server if name == "no-mptcp-xdp" else r.client, tmp_path) as pol:
        p0 = r.paths[0]
        C, S = r.client.ns, r.server.ns
        legacy, other = r.start_server(), r.start_server()
        pol.apply(name, r, port=legacy.port)
        cap = r.server.capture(p0.server_if, "tcp[tcpflags] & tcp-syn != 0", snaplen=128).start()
        n0c, n0s = kernel.nstat(C), kernel.nstat(S)
        c1 = r.start_client(legacy.port, forever=True, timeout=30)
        c2 = r.start_client(other.port, forever=True, timeout=30)
        wait_for(lambda: {legacy.port, other.port} <= {s.rport for s in kernel.tcp_sockets(C)},
                 10, "both connections established")
        wait_for(lambda: [s for s in kernel.mptcp_sockets(C) if s.rport == other.port
                          and "fallback" not in s.info.split()], 10,
                 f"ss -M: the connection to {other.port} is an MPTCP connection")
        tcp = [s for s in kernel.tcp_sockets(C) if s.rport == legacy.port]
        msk = {s.rport: s for s in kernel.mptcp_sockets(C)}
        r1, r2 = c1.stop(), c2.stop()
        legacy.results(10), other.results(10)
        cap.stop()
        n1c, n1s = kernel.nstat(C), kernel.nstat(S)
        syns = [p for p in cap.packets("tcp") if p.tcp_flags & 0x12 == 0x02]
    to_legacy = [p for p in syns if p.dport == legacy.port]
    to_other = [p for p in syns if p.dport == other.port]
    facts = {"legacy": r1.get("mptcp"), "other": r2.get("mptcp"),
             "ss_M": {p: s.info[:100] for p, s in msk.items()},
             "legacy_subflow_flags": [s.mptcp_flags for s in tcp],
             "syns": [(p.dport, p.mptcp) for p in syns],
             "FallbackSYNACK": delta(n0c, n1c, "MPTcpExtMPCapableFallbackSYNACK"),
             "SYNTXDrop": delta(n0c, n1c, "MPTcpExtMPCapableSYNTXDrop")}
    print(json.dumps(facts, default=str))
    assert r1["intact"] and r2["intact"], (r1, r2)
    assert len(to_legacy) == 1 and to_legacy[0].mptcp == [], \
        f"SYNs to {legacy.port} on the wire: {[(p.number, p.mptcp) for p in to_legacy]}"
    assert to_other and "MP_CAPABLE" in to_other[0].mptcp, facts
    assert facts["SYNTXDrop"] == 0, facts        # no SYN retransmit/blackhole fallback
    assert facts["FallbackSYNACK"] >= 1, facts
    # ss -M: the legacy connection fell back, the other one is MPTCP
    assert legacy.port in msk and "fallback" in msk[legacy.port].info.split(), facts
    assert "fallback" not in msk[other.port].info.split(), facts
    # ss -tiM: the peer never sent MP_CAPABLE on the legacy connection (no "M" flag)
    assert len(tcp) == 1 and "M" not in (tcp[0].mptcp_flags or ""), facts
    assert not r1["mptcp"]["is_mptcp"] and r2["mptcp"]["is_mptcp"], facts


# ---- add_subflow: `emptcp run` opens the second subflow (userspace PM) ------------------
def test_add_subflow_userspace_pm(mptcp_kernel, mptcp_plugin, tmp_path):
    import uuid
    with rig(paths=2, client_pm=1) as r:
        p1 = r.paths[1]
        C, S = r.client.ns, r.server.ns
        srv = r.start_server()
        path = tmp_path / "add-subflow.toml"
        path.write_text(render("add-subflow", r, port=srv.port))
        pin_root = f"/sys/fs/bpf/emptcp-sc-{uuid.uuid4().hex[:8]}"
        exe = os.path.join(os.path.dirname(sys.executable), "emptcp")
        daemon = r.client.popen([exe, "run", str(path), "--pin-root", pin_root, "--timeout", "60"],
                                stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        failure = None
        try:
            line = daemon.stdout.readline()
            assert "applied" in line, f"emptcp run did not start: {line}{daemon.stderr.read()}"
            n0c, n0s = kernel.nstat(C), kernel.nstat(S)
            b0 = kernel.link(C, p1.client_if)["tx_bytes"]
            cli = r.start_client(srv.port, forever=True, timeout=30)
            joined = wait_for(lambda: [s for s in kernel.subflows(C, srv.port)
                                       if s.local == p1.client_addr and "j" in s.mptcp_flags],
                              10, f"ss -tiM: a joined subflow from {p1.client_addr}")
            wait_for(lambda: kernel.link(C, p1.client_if)["tx_bytes"] - b0 > 1 << 20, 15,
                     "the new subflow carries 1 MiB")
            rep = cli.stop()
            srv.results(10)
            n1c, n1s = kernel.nstat(C), kernel.nstat(S)
        except AssertionError as e:
            failure = e
            stages = kernel.emptcp_status(C, pin_root)
        finally:
            daemon.send_signal(signal.SIGTERM)
            out, err = daemon.communicate(timeout=20)
            subprocess.run(["nsenter", f"--net=/var/run/netns/{C}", "--", exe, "detach", "--all",
                            "--pin-root", pin_root], capture_output=True, timeout=60)
        if failure is not None:   # with what the daemon said and what the stages counted
            raise AssertionError(f"{failure}\n emptcp run: {(out + err).strip()[-1500:]}\n "
                                 f"status: {json.dumps(stages.get('hooks'))[:1500]}")
    facts = {"joined": joined[0].mptcp_flags, "daemon": (out + err).strip().splitlines()[-5:],
             **{k: delta(n0c, n1c, k) for k in ("MPTcpExtMPJoinSynAckRx", "MPTcpExtMPRstRx",
                                                "MPTcpExtMPRstTx", "MPTcpExtDSSNotMatching")},
             "server_MPJoinSynRx": delta(n0s, n1s, "MPTcpExtMPJoinSynRx"),
             **{f"server_{k}": delta(n0s, n1s, k) for k in ("MPTcpExtMPRstTx",
                                                            "MPTcpExtDSSNotMatching")}}
    print(json.dumps(facts))
    assert rep["intact"] and rep["mptcp"]["is_mptcp"], rep
    assert facts["MPTcpExtMPJoinSynAckRx"] >= 1 and facts["server_MPJoinSynRx"] >= 1, facts
    assert daemon.returncode == 0, facts
    # the join is never reset (the MP_JOIN race of tests/kernel_repro/mptcp_join_race.py: the
    # subflow opens as backup and is promoted once established)
    for k in ("MPTcpExtMPRstTx", "MPTcpExtMPRstRx", "MPTcpExtDSSNotMatching",
              "server_MPTcpExtMPRstTx", "server_MPTcpExtDSSNotMatching"):
        assert facts[k] == 0, (k, facts)


# ---- built-in selectors act on their flows only ----------------------------------------
def test_selectors_act_only_on_selected_flows(mptcp_kernel, tmp_path):
    with rig(paths=2) as r, Policy(r.server, tmp_path) as pol:
        p0, p1 = r.paths
        S = r.server.ns
        srv_a, srv_b = r.start_server(), r.start_server()
        port3 = r.port()
        pol.apply("selectors", r, port=srv_a.port, port2=srv_b.port, port3=port3)

        def step(port: int, nbytes: int, timeout: float):
            s0, n0 = pol.stage_packets(), kernel.nstat(S)
            l0 = [kernel.link(S, p0.server_if), kernel.link(S, p1.server_if),
                  kernel.link(r.client.ns, p0.client_if)]
            try:
                rep = r.start_client(port, nbytes=nbytes, timeout=timeout).result(timeout + 10)
            except RuntimeError as e:   # connect() timed out: no report
                rep = {"intact": False, "error": str(e).strip().splitlines()[-1]}
            s1, n1 = pol.stage_packets(), kernel.nstat(S)
            l1 = [kernel.link(S, p0.server_if), kernel.link(S, p1.server_if),
                  kernel.link(r.client.ns, p0.client_if)]
            d = {p: {k: s1[p][k] - s0[p][k] for k in s1[p]} for p in s1}
            return rep, d, [kernel.link_delta(a, b) for a, b in zip(l0, l1)], \
                {k: delta(n0, n1, k) for k in ("TcpPassiveOpens", "MPTcpExtMPJoinSynRx",
                                               "MPTcpExtMPJoinAckRx")}
        rep_b, ctl, lk_b, k_b = step(srv_b.port, 4 << 20, 10)
        srv_b.results(10)
        rep_a, sel, lk_a, k_a = step(srv_a.port, 4 << 20, 10)
        srv_a.results(10)
        rep_c, blk, lk_c, k_c = step(port3, 1 << 16, 1.5)
    print(json.dumps({"control": [ctl, lk_b, k_b], "selected": [sel, lk_a, k_a],
                      "blocked": [blk, lk_c, k_c, rep_c]}, default=str))
    assert rep_b["intact"] and rep_a["intact"], (rep_b, rep_a)
    # control flow: neither service policy acted
    assert ctl["by-service"]["a0:count"] == 0 and ctl["blocked"]["a0:count"] == 0, ctl
    # service selector: counted the selected flow's packets on path 0 -- about all of them
    # (the interface counts ARP/ND too, and the join SYN/ACK of path 1 is not on path 0)
    counted, arrived = sel["by-service"]["a0:count"], lk_a[0]["rx_packets"]
    assert 100 < counted <= arrived and counted >= 0.9 * arrived - 10, (counted, arrived)
    # mptcp_subtype=MP_JOIN on path 1: the join handshake packets the kernel counted
    for d, k, lk in ((ctl, k_b, lk_b), (sel, k_a, lk_a)):
        handshake = k["MPTcpExtMPJoinSynRx"] + k["MPTcpExtMPJoinAckRx"]
        assert handshake >= 2 and handshake <= d["joins"]["a0:count"] <= handshake + 4, (d, k)
        assert lk[1]["rx_packets"] > 50, lk
    # ip_pair 192.0.2.0/24 selected nothing
    assert all(d["nobody"]["a0:count"] == 0 for d in (ctl, sel, blk))
    # blocked service: the client sent its SYNs, XDP dropped them, TCP never saw them
    assert not rep_c["intact"] and blk["blocked"]["a1:drop"] >= 1, (rep_c, blk)
    assert lk_c[2]["tx_packets"] >= blk["blocked"]["a1:drop"] and k_c["TcpPassiveOpens"] == 0, \
        (lk_c, k_c)


# ---- a mixed chain re-applied 50 times during a bulk download ---------------------------
# Open defect, seen 2 of 6 runs on an idle machine at the end of this session: after the
# 50 applies the download goes on, but once the server stops, the client sometimes never
# sees the end of the stream (no report within 20 s; otherwise it ends at once). Not yet
# diagnosed (emptcp's ACK rewrites, the rig's stop, or MPTCP's DATA_FIN). Only that
# symptom is tolerated: every integrity and counter assertion below still fails the test.
@pytest.mark.xfail(raises=RuntimeError, strict=False,
                   reason="open defect: client gets no end of stream after 50 re-applies "
                          "(2/6 runs); see the closing note of 2026-11-30")
def test_mixed_chain_reapplied_50_times(mptcp_kernel, mptcp_plugin, tmp_path):
    from emptcp.rig import PathSpec
    windows = (512, 1024, 4096, 65535)
    with rig(paths=[PathSpec(), PathSpec()]) as r, Policy(r.client, tmp_path) as pol:
        p1 = r.paths[1]
        C, S = r.client.ns, r.server.ns
        srv = r.start_server()
        cli = r.start_client(srv.port, forever=True, reverse=True, timeout=30)
        wait_for(lambda: len(kernel.subflows(C, srv.port)) >= 2, 10, "two subflows")
        n0c, n0s = kernel.nstat(C), kernel.nstat(S)
        cap = r.server.capture(p1.server_if, f"tcp and src host {p1.client_addr}",
                               snaplen=96).start()
        for i in range(50):   # back to back: the flips land among the ACKs of the download
            pol.apply("mixed", r, backup=bool(i % 2), window=windows[i % 4])
        t0 = kernel.link(S, r.paths[0].server_if)["tx_bytes"]
        wait_for(lambda: kernel.link(S, r.paths[0].server_if)["tx_bytes"] - t0 > 1 << 20, 10,
                 "the download goes on after the last apply")
        cap.stop()
        srv_rep = srv.stop()        # a download ends when the server stops sending
        rep = cli.result(20)
        n1c, n1s = kernel.nstat(C), kernel.nstat(S)
        pkts = cap.packets("tcp")
    seen = {p.window for p in pkts if not p.tcp_flags & 0x2}
    facts = {k: [delta(n0c, n1c, k), delta(n0s, n1s, k)]
             for k in ("MPTcpExtMPRstRx", "MPTcpExtMPRstTx", "TcpInCsumErrors", "MPTcpExtMPPrioRx")}
    print(json.dumps({**facts, "windows_on_wire": sorted(seen)[:12], "packets": len(pkts)}))
    assert pol.n == 50
    assert rep["intact"] and srv_rep and srv_rep[0]["bytes_sent"] == rep["bytes_received"] > 0, \
        (rep, srv_rep)
    assert facts["MPTcpExtMPRstRx"] == [0, 0] and facts["MPTcpExtMPRstTx"] == [0, 0], facts
    assert facts["TcpInCsumErrors"] == [0, 0], facts
    assert facts["MPTcpExtMPPrioRx"][1] >= 1, facts            # MP_PRIO reached the server
    assert seen & set(windows), sorted(seen)[:12]              # rewritten windows on the wire
    assert pkts and all(p.checksums_ok for p in pkts), \
        [p.number for p in pkts if not p.checksums_ok][:10]


# ---- the demo command itself -------------------------------------------------------------
def test_demo_cli_list_and_unknown_scenario():
    out = subprocess.run([sys.executable, "-m", "emptcp", "demo", "--list"], capture_output=True,
                         text=True, timeout=60)
    assert out.returncode == 0 and "backup" in out.stdout
    bad = subprocess.run([sys.executable, "-m", "emptcp", "demo", "nope"], capture_output=True,
                         text=True, timeout=60)
    assert bad.returncode != 0 and "unknown scenario" in bad.stdout + bad.stderr


def test_templates_render_to_valid_config():
    """Every shipped template renders and parses (names only, no kernel)."""
    from emptcp.chain.config import parse_text
    from emptcp.rig.topology import Path, PathSpec

    from .scenario import SCENARIOS

    class FakeRig:
        paths = [Path(i, PathSpec(), f"c{i}", f"s{i}", f"10.1.{i}.1", f"10.1.{i}.2") for i in (0, 1)]
    names = sorted(fn[:-5] for fn in os.listdir(SCENARIOS) if fn.endswith(".toml"))
    assert len(names) >= 10, names
    for name in names:
        parse_text(render(name, FakeRig(), port=5001, port2=5002, port3=5003, window=16,
                          backup=True), f"{name}.toml")
