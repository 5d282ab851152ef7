"""Real MPTCP through the rig: subflows, counters, per-path bytes, capture, userspace PM."""
import time

import pytest

from emptcp.mptcp.events import MptcpEventMonitor
from emptcp.rig import Rig, PathSpec, MptcpPM, nstat_delta


def _wait(cond, timeout=5.0, step=0.05):
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        v = cond()
        if v:
            return v
        time.sleep(step)
    return cond()


def test_two_path_transfer_uses_both_paths():
    with Rig(2) as rig:
        c0, s0 = rig.client.nstat(), rig.server.nstat()
        b0 = rig.path_bytes()
        srv = rig.start_server()
        cli = rig.start_client(srv.port, forever=True)
        sfs = _wait(lambda: len(rig.client.subflows(srv.port)) >= 2 and rig.client.subflows(srv.port))
        assert sfs and len(sfs) == 2, rig.client.out("ss -tinM")
        assert {s.local for s in sfs} == {rig.paths[0].client_addr, rig.paths[1].client_addr}
        assert sum(s.is_join for s in sfs) == 1
        # run until both paths carried a few MiB (a busy CI machine may need longer than 0.5 s)
        _wait(lambda: all(a["client_tx"] - b["client_tx"] > 4 << 20
                          for a, b in zip(rig.path_bytes(), b0)), timeout=8)
        rep = cli.stop()
        assert rep["intact"] and rep["bytes_sent"] > 4 << 20
        assert rep["mptcp"]["is_mptcp"] and not rep["mptcp"]["fallback"]
        assert rep["mptcp"]["subflows"] == 1  # additional subflows (excl. initial)
        dc = nstat_delta(c0, rig.client.nstat(), "MPTcpExt")
        ds = nstat_delta(s0, rig.server.nstat(), "MPTcpExt")
        assert ds.get("MPTcpExtMPCapableSYNRX") == 1 and ds.get("MPTcpExtMPJoinSynRx") == 1
        assert ds.get("MPTcpExtMPJoinAckRx") == 1 and dc.get("MPTcpExtMPJoinSynAckRx") == 1
        moved = [a["client_tx"] - b["client_tx"] for a, b in zip(rig.path_bytes(), b0)]
        assert all(m > 1 << 20 for m in moved), moved


def test_backup_endpoint_visible_in_ss_nstat_and_capture():
    specs = [PathSpec(offload=False), PathSpec(offload=False, backup=True)]
    with Rig(specs) as rig:
        s0 = rig.server.nstat()
        cap = rig.client.capture(rig.paths[1].client_if).start()
        srv = rig.start_server()
        cli = rig.start_client(srv.port, forever=True)
        sfs = _wait(lambda: [s for s in rig.client.subflows(srv.port) if s.is_join])
        assert sfs and sfs[0].backup and not sfs[0].peer_backup  # client flags "Jjbec"
        ssv = _wait(lambda: [s for s in rig.server.subflows(srv.port) if s.is_join])
        assert ssv and ssv[0].peer_backup and not ssv[0].backup  # server flags "JBec"
        b0 = rig.path_bytes()
        _wait(lambda: rig.path_bytes()[0]["client_tx"] - b0[0]["client_tx"] > 1 << 20, timeout=8)
        rep = cli.stop()
        assert rep["intact"]
        ds = nstat_delta(s0, rig.server.nstat())
        assert ds.get("MPTcpExtMPJoinSynBackupRx") == 1
        assert ds.get("TcpInCsumErrors", 0) == 0
        pkts = cap.packets()
        joins = [p for p in pkts if "MP_JOIN" in p.mptcp and p.tcp_flags & 0x02]
        syn = [p for p in joins if not p.tcp_flags & 0x10]
        assert syn and syn[0].mptcp_backup == [1] and syn[0].src == rig.paths[1].client_addr
        # offloads off: tshark validates and finds every checksum good
        assert pkts and all(p.tcp_csum_status == 1 and p.ip_csum_status == 1 for p in pkts)


def test_plain_tcp_mode_and_fallback_detection():
    with Rig(2) as rig:
        rep = rig.transfer(nbytes=4 << 20, tcp=True)
        assert rep["intact"] and rep["bytes_received"] == 4 << 20
        assert rep["mptcp"]["is_mptcp"] is False
        # MPTCP client against a plain-TCP server: fallback
        c0 = rig.client.nstat()
        srv = rig.start_server(tcp=True)
        rep = rig.start_client(srv.port, nbytes=1 << 20).result()
        srv.results()
        assert rep["intact"] and rep["mptcp"]["fallback"] is True
        assert rep["mptcp"]["is_mptcp"] is False
        assert nstat_delta(c0, rig.client.nstat()).get("MPTcpExtMPCapableFallbackSYNACK") == 1


def test_reverse_and_ipv6_transfer():
    with Rig(2, ipv6=True) as rig:
        rep = rig.transfer(nbytes=8 << 20, reverse=True)
        assert rep["intact"] and rep["bytes_received"] == 8 << 20 and rep["mptcp"]["is_mptcp"]
        rep = rig.transfer(nbytes=8 << 20, v6=True)
        assert rep["intact"] and rep["mptcp"]["is_mptcp"]


def test_userspace_pm_subflow_create():
    with Rig(2, client_pm=1) as rig:
        assert rig.client.sysctl("net.mptcp.pm_type") == "1"
        assert rig.server.sysctl("net.mptcp.pm_type") == "0"  # per-netns
        with MptcpPM(rig.client.ns) as pm, MptcpEventMonitor(rig.client.ns) as mon:
            s0 = rig.server.nstat()
            srv = rig.start_server()
            cli = rig.start_client(srv.port, forever=True)
            ev = next(e for e in mon.events(timeout=3) if e.type == "established")
            msk = [e for e in rig.client.ss() if e.netid == "mptcp" and e.rport == srv.port]
            assert int(msk[0].token, 16) == ev.token
            # userspace PM: nothing automatic, even after the connection moved 1 MiB
            b0 = rig.paths[0].bytes()
            assert _wait(lambda: rig.paths[0].bytes()["client_tx"] - b0["client_tx"] > 1 << 20,
                         timeout=8)
            assert len(rig.client.subflows(srv.port)) == 1
            p1 = rig.paths[1]
            b0 = p1.bytes()
            pm.subflow_create(ev.token, p1.client_addr, rig.paths[0].server_addr, srv.port,
                              local_id=2, ifindex=p1.client_ifindex)
            sub = next(e for e in mon.events(timeout=3) if e.type == "sub_established")
            assert sub.saddr == p1.client_addr and sub.token == ev.token
            sfs = _wait(lambda: len(rig.client.subflows(srv.port)) == 2 and rig.client.subflows(srv.port))
            assert sfs, rig.client.out("ss -tinM")
            # until the new subflow carried 1 MiB (slower with checksums in software)
            _wait(lambda: p1.bytes()["client_tx"] - b0["client_tx"] > 1 << 20, timeout=8)
            rep = cli.stop()
        assert rep["intact"] and rep["mptcp"]["subflows"] == 1
        assert nstat_delta(s0, rig.server.nstat()).get("MPTcpExtMPJoinSynRx") == 1
        assert p1.bytes()["client_tx"] - b0["client_tx"] > 1 << 20


def test_mp_prio_and_add_addr_counters():
    """Counter names the MPTCP acceptance tests rely on: MPTcpExtMPPrioRx/Tx, MPTcpExtAddAddr."""
    with Rig(2, client_subflow=True, server_signal=True) as rig:
        c0, s0 = rig.client.nstat(), rig.server.nstat()
        srv = rig.start_server()
        cli = rig.start_client(srv.port, forever=True)
        assert _wait(lambda: nstat_delta(c0, rig.client.nstat()).get("MPTcpExtAddAddr"))
        assert _wait(lambda: [s for s in rig.client.subflows(srv.port)
                              if s.is_join and s.local == rig.paths[1].client_addr])
        # kernel PM: flipping the endpoint's backup flag sends MP_PRIO on its subflows
        rig.client.mptcp("endpoint", "change", "id", "2", "backup")
        assert _wait(lambda: nstat_delta(s0, rig.server.nstat()).get("MPTcpExtMPPrioRx"))
        sv = _wait(lambda: [s for s in rig.server.subflows(srv.port)
                            if s.remote == rig.paths[1].client_addr and s.peer_backup])
        assert sv, rig.server.out("ss -tinM")
        rep = cli.stop()
        assert rep["intact"]
        dc = nstat_delta(c0, rig.client.nstat())
        assert dc.get("MPTcpExtMPPrioTx", 0) >= 1 and dc.get("MPTcpExtEchoAddTx", 0) >= 1
        assert nstat_delta(s0, rig.server.nstat()).get("MPTcpExtAddAddrTx", 0) >= 1
