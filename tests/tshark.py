"""A second, independent checksum oracle: Wireshark's dissector.

Frames that scapy found valid (``tests/datapath/helpers.checksums_ok``) are
recorded here; at the end of the session they are written to one pcap and
tshark, with IP and TCP checksum validation on, must call every checksum good.
"""
from __future__ import annotations

import os
import shutil
import subprocess
import tempfile

FRAMES: list[bytes] = []


def record(frame: bytes) -> None:
    FRAMES.append(bytes(frame))


def verify(frames: list[bytes]) -> list[str]:
    """Problems tshark finds in ``frames`` (an empty list when all checksums are good)."""
    from scapy.layers.l2 import Ether
    from scapy.utils import wrpcap
    with tempfile.TemporaryDirectory() as d:
        pcap = os.path.join(d, "checked.pcap")
        wrpcap(pcap, [Ether(f) for f in frames])
        out = subprocess.run(
            ["tshark", "-n", "-r", pcap, "-o", "tcp.check_checksum:TRUE",
             "-o", "ip.check_checksum:TRUE", "-T", "fields", "-e", "frame.number",
             "-e", "ip.checksum.status", "-e", "tcp.checksum.status",
             "-e", "tcp.checksum", "-e", "tcp.checksum_calculated"],
            capture_output=True, text=True, check=True).stdout
    problems = []
    for line in out.splitlines():
        num, ip_status, tcp_status, field, calc = (line.split("\t") + [""] * 5)[:5]
        if tcp_status == "0" and field == "0xffff" and calc == "0x0000":
            tcp_status = "1"  # the same number in one's complement (RFC 1624)
        # status 1 = good, 0 = bad, 2 = not checked; IPv6 has no header checksum
        if ip_status not in ("", "1") or tcp_status != "1":
            problems.append(f"frame {num} ({frames[int(num) - 1][:64].hex()}...): "
                            f"ip checksum status {ip_status or '-'}, tcp {tcp_status or '-'}")
    return problems


def available() -> bool:
    return shutil.which("tshark") is not None
