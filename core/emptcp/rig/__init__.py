"""emptcp.rig — a reusable multipath (MPTCP) test rig on network namespaces.

    from emptcp.rig import Rig, PathSpec
    with Rig(paths=[PathSpec(), PathSpec(rate="20mbit", offload=False)]) as rig:
        rep = rig.transfer(duration=1)          # verified MPTCP transfer client -> server
        assert rep["intact"] and rep["mptcp"]["is_mptcp"]
        rig.client.subflows(); rig.client.nstat(); rig.path_bytes()

Facts measured on this machine (kernel 6.18, iproute2 6.1, tshark 4.0.17, pyroute2 0.9.7)
----------------------------------------------------------------------------------------
sysctls (all per-netns on 6.18; a netns starts with enabled=1, pm_type=0):
  net.mptcp.enabled, net.mptcp.pm_type (0 kernel, 1 userspace), net.mptcp.path_manager
  ("kernel"/"userspace", newer string twin of pm_type), net.mptcp.checksum_enabled,
  net.mptcp.allow_join_initial_addr_port, available_path_managers = "kernel userspace".

nstat counter names (``nstat -azsj`` -> {"kernel": {...}}; read per netns):
  joins:      MPTcpExtMPJoinSynRx, MPTcpExtMPJoinSynBackupRx (join SYN with B bit),
              MPTcpExtMPJoinSynAckRx, MPTcpExtMPJoinSynAckBackupRx, MPTcpExtMPJoinAckRx,
              MPTcpExtMPJoinSynTx, MPTcpExtMPJoinRejected, MPTcpExtMPJoinNoTokenFound
  MP_PRIO:    MPTcpExtMPPrioRx, MPTcpExtMPPrioTx
  ADD_ADDR:   MPTcpExtAddAddr (ADD_ADDR received), MPTcpExtAddAddrTx, MPTcpExtEchoAdd
              (echo received), MPTcpExtEchoAddTx, MPTcpExtAddAddrDrop, MPTcpExtAddAddrTxDrop
  REMOVE:     MPTcpExtRmAddr, MPTcpExtRmAddrTx, MPTcpExtRmSubflow
  MP_CAPABLE: MPTcpExtMPCapableSYNRX, MPTcpExtMPCapableSYNTX, MPTcpExtMPCapableSYNACKRX,
              MPTcpExtMPCapableACKRX
  fallback:   MPTcpExtMPCapableFallbackACK (server: 3rd ACK without MP_CAPABLE),
              MPTcpExtMPCapableFallbackSYNACK (client: SYN/ACK without MP_CAPABLE),
              MPTcpExtMPCapableDataFallback, MPTcpExtDssFallback, MPTcpExtMPFallbackTokenInit,
              MPTcpExtMPCapableSYNTXDrop, MPTcpExtMPCapableEndpAttempt
  checksums:  TcpInCsumErrors (group "Tcp", not TcpExt), IpExtInCsumErrors, MPTcpExtDataCsumErr
  others:     MPTcpExtMPCurrEstab, MPTcpExtMPTCPRetrans, MPTcpExtMPRstTx/Rx, MPTcpExtMPFailTx/Rx,
              MPTcpExtMPFastcloseTx/Rx, MPTcpExtSubflowStale, MPTcpExtSubflowRecover

``ss -tinHM``: MPTCP subflows are "tcp" sockets whose info line contains
  ``tcp-ulp-mptcp flags:<F> token:<remote>(id:<remote id>)/<local>(id:<local id>) seq:.. sfseq:..``
  with F letters: M/m = MP_CAPABLE remote/local, J/j = MP_JOIN remote/local,
  **B / b = backup set by the remote / by the local side**, e = fully established,
  c = connected, v = mapping valid.  E.g. a client ``subflow backup`` endpoint gives
  client-side "flags:Jjbec", server-side "flags:JBec".  The "mptcp" socket line shows
  ``subflows:N subflows_max:.. token:<local token>`` — that local token is what the
  userspace PM commands need (also MPTCP_INFO.mptcpi_token from getsockopt).
  Per-subflow counters: bytes_sent / bytes_acked (sender), bytes_received (receiver).
  Sockets of a dual-stack "::" listener show v4-mapped "[::ffff:10.0.0.2]:5001";
  :func:`stats.ss` strips the ::ffff: prefix.
  Kernel PM: ``ip mptcp endpoint change id N backup`` sends MP_PRIO on that endpoint's
  subflows (MPTcpExtMPPrioTx on the sender, MPTcpExtMPPrioRx on the peer, whose ss then
  shows "B").  With a client ``subflow`` endpoint on path 1 *and* a server ``signal``
  endpoint, the client opens two joins from its path-1 address (to the initial server
  address and to the announced one).

Throughput: single-flow veth throughput on this 2-vCPU machine swings from ~70 Mbit/s to
  ~4 Gbit/s depending on whether sender and receiver share a CPU; compare paths only with
  shaping (PathSpec(rate=...)) well below 70 Mbit/s, or with interface byte counters.

Userspace PM (pm_type=1): ``ip mptcp`` of iproute2 6.1 has only endpoint/limits/monitor,
  no ``subflow``/``announce``; pyroute2 0.9.7 genl "mptcp" knows cmds 1..7 only.
  :mod:`emptcp.mptcp.pm` speaks genl "mptcp_pm" (version 1, groups "mptcp_pm_cmds",
  "mptcp_pm_events") itself: SUBFLOW_CREATE(10) with TOKEN(4,u32), ADDR(1,nested: FAMILY u16,
  ID u8, ADDR4 be32, [IF_IDX s32], [FLAGS u32]) and ADDR_REMOTE(6,nested: FAMILY, ADDR4,
  PORT u16 host order).  Proven by tests/rig/test_rig.py::test_userspace_pm_subflow_create.

MPTCP_INFO (getsockopt(SOL_MPTCP=284, MPTCP_INFO=1)): u8 subflows (additional, excl. the
  initial one), add_addr_signal, add_addr_accepted, subflows_max, ..; u32 flags @8
  (1 = FALLBACK, 2 = REMOTE_KEY_RECEIVED); u32 token @12; bytes_sent/received/acked
  u64 @56/64/72; subflows_total u8 @80.  getsockopt(SOL_TCP, TCP_IS_MPTCP=43) is 1 on a
  live MPTCP socket, 0 after fallback or on plain TCP.

tshark 4.0 preference names: ``tcp.check_checksum``, ``ip.check_checksum`` (default FALSE).
"""
from ..netns import enter, run, out, popen, ifindex, sysctl, ns_path
from .topology import Rig, PathSpec, Path, Side, TrafficServer, TrafficClient, cleanup_stale, parse_rate
from ..mptcp.stats import ss, subflows, link_stats, nstat, nstat_delta, SsEntry
from .capture import Capture, Packet, decode, MPTCP_SUBTYPES
from ..mptcp.pm import MptcpPM, NetlinkError

__all__ = ["Rig", "PathSpec", "Path", "Side", "TrafficServer", "TrafficClient", "cleanup_stale",
           "parse_rate", "enter", "run", "out", "popen", "ifindex", "sysctl", "ns_path",
           "ss", "subflows", "link_stats", "nstat", "nstat_delta", "SsEntry",
           "Capture", "Packet", "decode", "MPTCP_SUBTYPES", "MptcpPM", "NetlinkError"]
