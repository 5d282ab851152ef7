"""Packet builders and independent checksum checks (scapy is the oracle)."""
from __future__ import annotations

from scapy.layers.inet import IP, TCP
from scapy.layers.inet6 import IPv6
from scapy.layers.l2 import Ether
from scapy.packet import Raw

from emptcp import abi

from .. import tshark
from emptcp.chain.compiler import HookPolicies, compile_generation


def tcp4(src="10.0.0.2", dst="10.0.0.1", sport=40000, dport=80, options=(), payload=b"hello",
         window=8192, flags="A"):
    return bytes(Ether(src="02:00:00:00:00:01", dst="02:00:00:00:00:02") /
                 IP(src=src, dst=dst) /
                 TCP(sport=sport, dport=dport, window=window, flags=flags, options=list(options)) /
                 Raw(payload))


def tcp6(src="fd00::2", dst="fd00::1", sport=40000, dport=80, options=(), payload=b"hello",
         window=8192):
    return bytes(Ether(src="02:00:00:00:00:01", dst="02:00:00:00:00:02") /
                 IPv6(src=src, dst=dst) /
                 TCP(sport=sport, dport=dport, window=window, flags="A", options=list(options)) /
                 Raw(payload))


def same_checksum(expected: int, found: int) -> bool:
    """0x0000 and 0xffff are one number in one's complement (RFC 1624): an
    incremental update may legitimately produce either."""
    return expected == found or {expected, found} == {0, 0xFFFF}


def checksums_ok(frame: bytes, record: bool = True) -> bool:
    """Recompute IPv4 header and TCP checksums with scapy and compare.

    Valid frames are also queued for tshark (``record``); the fuzz test opts out:
    its deliberately malformed headers are decoded differently by each dissector."""
    pkt = Ether(frame)
    ok = True
    if IP in pkt:
        ip = pkt[IP]
        fresh = IP(bytes(ip))
        fresh.chksum = None
        ok &= same_checksum(IP(bytes(fresh))[IP].chksum, ip.chksum)
        l3 = IP
    elif IPv6 in pkt:
        l3 = IPv6
    else:
        return False
    if TCP in pkt:
        fresh = pkt[l3].copy()
        fresh[TCP].chksum = None
        if l3 is IP:
            fresh.chksum = None
        ok &= same_checksum(l3(bytes(fresh))[TCP].chksum, pkt[TCP].chksum)
    if ok and record and TCP in pkt:
        tshark.record(frame)  # checked again by tshark at the end of the session
    return bool(ok)


def tcp_len_consistent(frame: bytes) -> bool:
    pkt = Ether(frame)
    if IP in pkt:
        return pkt[IP].len == len(bytes(pkt[IP]))
    return pkt[IPv6].plen == len(bytes(pkt[IPv6].payload))


def apply(dp, gen, hooks: list[HookPolicies]):
    """Compile ``hooks`` into generation ``gen`` and make it active."""
    dp.write(gen, hooks, dp.slots)
    dp.flip(gen)
    return compile_generation(gen, hooks, dp.slots, dp.plans[gen].first)


def run(dp, kind, frame, repeat=1):
    prog = dp.entry[kind]
    return prog.test_run(frame, repeat=repeat)


def stat(dp, hook, policy, phase, stage):
    return dp.stage_stats(hook, policy, phase, stage)


SEL, ACT = abi.PHASE_SEL, abi.PHASE_ACT
