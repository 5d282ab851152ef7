#!/usr/bin/env python3
"""Reproduce a Linux MPTCP race with no emptcp code: a passive MP_JOIN subflow whose first
data arrives before the server has attached it loses its mapping, and the server resets it.

Seen on 6.18 (`uname -r` 6.18.44): the server accepts an MP_JOIN while its MPTCP socket
is owned by the application (a recvmsg() in progress), so the new subflow goes on the
msk's join_list and is attached later, in the socket's release callback
(``__mptcp_flush_join_list`` -> ``mptcp_subflow_joined``), which sets
``subflow->map_seq = msk->ack_seq``.  If the client's first data segment on the new
subflow arrived in between, ``get_mapping_status()`` had already installed that segment's
DSS mapping (map_valid=1); the flush overwrites its data sequence number with the
connection's ack_seq.  The next segment of the same DSS mapping no longer matches the
(clobbered) current one -> ``MPTcpExtDSSNotMatching`` +1, the subflow is reset with
MP_TCPRST reason 1 (``MPTcpExtMPRstTx`` on the server), and the bytes already received on
it are re-mapped to a wrong data sequence number (dropped as old data when the
connection has moved past it: ``MPTcpExtDuplicateData``).

Observed with a BPF tp_btf probe (sk_data_ready / subflow_check_data_avail / tcp_probe /
tcp_send_reset) on the server's join subflow: first data with msk owned=1, subflow on the
join_list=1, map_seq = the segment's DSN; 4.5 ms later the join_list flush has run and
map_seq == the msk ack_seq of that moment (65536..393216 bytes lower); the next segment
carries the original DSN -> MAPPING_INVALID -> RST.  On the wire every segment of the
subflow carries the same DSS (same DSN, ssn 1, len 64080): the sender is consistent.

The race needs the first data on the new subflow to reach the server while the join is
still pending on the join_list (the server application inside recvmsg()).  Modes:

``plain``         the subflow is created (userspace PM, SUBFLOW_CREATE) as soon as the
                  connection allows it, while the client streams data: data follows the
                  join within ~1 ms -> the race is open.
``backup-first``  the subflow is created with the backup flag (the client scheduler
                  sends nothing on it), and promoted (SET_FLAGS, MP_PRIO) only after it
                  is established plus a settle time: by then the server has released
                  its socket lock at least once and attached the subflow.

Usage (root)::

    python3 tests/kernel_repro/mptcp_join_race.py --mode plain --attempts 40
    python3 tests/kernel_repro/mptcp_join_race.py --mode backup-first --attempts 40

Prints one JSON line per attempt and a JSON summary (``resets``: attempts where the
server reset the join subflow, from the server's nstat).  Exit status 0 always unless
the set-up itself failed; the caller judges the counts.
"""
from __future__ import annotations

import argparse
import errno
import json
import os
import random
import socket
import struct
import subprocess
import sys
import threading
import time

IPPROTO_MPTCP, SOL_MPTCP = 262, 284
MPTCP_INFO, MPTCP_TCPINFO, MPTCP_SUBFLOW_ADDRS = 1, 2, 3
PORT = 5999
PERIOD = 1000003          # prime: a position-dependent pattern
CHUNK = 65536
_BASE = random.Random(7).randbytes(PERIOD)
PATTERN = _BASE + _BASE[:CHUNK]   # any CHUNK-long window at offset < PERIOD is contiguous
COUNTERS = ("MPTcpExtDSSNotMatching", "MPTcpExtMPRstTx", "MPTcpExtMPRstRx",
            "MPTcpExtMPJoinAckRx", "MPTcpExtDuplicateData", "MPTcpExtMPTCPRetrans")


# ---- a minimal generic-netlink client for the mptcp_pm family ---------------------------
def _nla(t: int, payload: bytes) -> bytes:
    n = 4 + len(payload)
    return struct.pack("=HH", n, t) + payload + b"\0" * ((4 - n % 4) % 4)


def _nlas(buf: bytes):
    off = 0
    while off + 4 <= len(buf):
        n, t = struct.unpack_from("=HH", buf, off)
        if n < 4:
            return
        yield t & 0x3FFF, buf[off + 4:off + n]
        off += (n + 3) & ~3


class Genl:
    def __init__(self):
        self.s = socket.socket(socket.AF_NETLINK, socket.SOCK_RAW, 16)
        self.s.bind((0, 0))
        self.seq = 0
        r = self.req(0x10, 3, _nla(2, b"mptcp_pm\0"), ack=False)   # CTRL_CMD_GETFAMILY
        self.fam = next(struct.unpack("=H", v[:2])[0] for t, v in _nlas(r[4:]) if t == 1)

    def req(self, fam: int, cmd: int, attrs: bytes, ack: bool = True) -> bytes:
        self.seq += 1
        body = struct.pack("=BBH", cmd, 1, 0) + attrs
        self.s.send(struct.pack("=IHHII", 16 + len(body), fam, 1 | (4 if ack else 0), self.seq, 0) + body)
        while True:
            data = self.s.recv(65536)
            n, typ, _, seq, _ = struct.unpack_from("=IHHII", data)
            if seq != self.seq:
                continue
            if typ == 2:                                   # NLMSG_ERROR
                err = struct.unpack_from("=i", data, 16)[0]
                if err:
                    raise OSError(-err, os.strerror(-err))
                return b""
            return data[16:n]

    @staticmethod
    def addr(t: int, ip: str, port: int = 0, id: int | None = None, flags: int | None = None,
             ifindex: int = 0) -> bytes:
        b = _nla(1, struct.pack("=H", socket.AF_INET))
        if id is not None:
            b += _nla(2, struct.pack("=B", id))
        b += _nla(3, socket.inet_aton(ip))
        if port:
            b += _nla(5, struct.pack("=H", port))
        if flags is not None:
            b += _nla(6, struct.pack("=I", flags))
        if ifindex:
            b += _nla(7, struct.pack("=i", ifindex))
        return _nla(t | 0x8000, b)

    def subflow_create(self, token, local, remote, rport, ifindex, backup):
        a = (_nla(4, struct.pack("=I", token)) + self.addr(1, local, id=1, ifindex=ifindex,
                                                            flags=4 if backup else None)
             + self.addr(6, remote, rport))
        self.req(self.fam, 10, a)

    def set_backup(self, token, local, lport, remote, rport, backup):
        a = (_nla(4, struct.pack("=I", token)) + self.addr(1, local, lport, flags=4 if backup else 0)
             + self.addr(6, remote, rport))
        self.req(self.fam, 7, a)


# ---- per-subflow facts from the MPTCP socket itself -------------------------------------
def subflows(s: socket.socket) -> list[dict]:
    """[{local, lport, remote, rport, state, bytes_acked}] via MPTCP_SUBFLOW_ADDRS + TCPINFO."""
    out = []
    try:
        addrs = _getsub(s, MPTCP_SUBFLOW_ADDRS, 256)
        infos = _getsub(s, MPTCP_TCPINFO, 232)
    except OSError:
        return out
    for a, ti in zip(addrs, infos):
        lport, lip = struct.unpack_from("!H4s", a, 2)
        rport, rip = struct.unpack_from("!H4s", a, 128 + 2)
        out.append({"local": socket.inet_ntoa(lip), "lport": lport, "remote": socket.inet_ntoa(rip),
                    "rport": rport, "state": ti[0], "bytes_acked": struct.unpack_from("=Q", ti, 120)[0]})
    return out


def _getsub(s: socket.socket, opt: int, usz: int, n: int = 8) -> list[bytes]:
    """getsockopt of a struct mptcp_subflow_data array (size_user = usz, room for n)."""
    import ctypes
    libc = ctypes.CDLL(None, use_errno=True)
    buf = ctypes.create_string_buffer(16 + n * usz)
    struct.pack_into("=IIII", buf, 0, 16, 0, 0, usz)
    ln = ctypes.c_uint32(len(buf))
    if libc.getsockopt(s.fileno(), SOL_MPTCP, opt, buf, ctypes.byref(ln)) != 0:
        e = ctypes.get_errno()
        raise OSError(e, os.strerror(e))
    _, num, _, usz2 = struct.unpack_from("=IIII", buf.raw, 0)
    return [buf.raw[16 + i * usz2:16 + (i + 1) * usz2] for i in range(min(num, n))]


# ---- roles --------------------------------------------------------------------------------
def server(read_size: int) -> None:
    ls = socket.socket(socket.AF_INET, socket.SOCK_STREAM, IPPROTO_MPTCP)
    ls.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    ls.bind(("0.0.0.0", PORT))
    ls.listen(16)
    print("listening", flush=True)

    def serve(c):
        buf, got, bad = bytearray(read_size), 0, None
        mv, pv = memoryview(buf), memoryview(PATTERN)
        while True:
            n = c.recv_into(buf)
            if not n:
                break
            for k in range(0, n, CHUNK):          # PATTERN holds any CHUNK-long window
                m, off = min(CHUNK, n - k), (got + k) % PERIOD
                if bad is None and mv[k:k + m] != pv[off:off + m]:
                    bad = got + k + next(i for i in range(m) if buf[k + i] != PATTERN[off + i])
            got += n
        c.sendall((json.dumps({"bytes": got, "intact": bad is None, "first_bad": bad}) + "\n").encode())
        c.close()
    while True:
        c, _ = ls.accept()
        threading.Thread(target=serve, args=(c,), daemon=True).start()


def client(mode: str, server_addr: str, local1: str, ifindex1: int, duration: float,
           settle: float, join_at: tuple) -> dict:
    s = socket.socket(socket.AF_INET, socket.SOCK_STREAM, IPPROTO_MPTCP)
    s.connect((server_addr, PORT))
    token = struct.unpack_from("=I", s.getsockopt(SOL_MPTCP, MPTCP_INFO, 256), 12)[0]
    rep: dict = {"mode": mode}
    stop = threading.Event()
    sent = [0]

    def send():
        mv = memoryview(PATTERN)
        t_end = time.monotonic() + duration
        try:
            while time.monotonic() < t_end:
                sent[0] += s.send(mv[sent[0] % PERIOD:sent[0] % PERIOD + CHUNK])
        except OSError as e:
            rep["send_error"] = str(e)
        stop.set()
    th = threading.Thread(target=send)
    th.start()
    pm = Genl()
    time.sleep(random.uniform(*join_at))    # join mid-transfer, at a varying point
    t0 = time.monotonic()
    while True:            # the userspace PM refuses (ENOTCONN) until fully established
        try:
            pm.subflow_create(token, local1, server_addr, PORT, ifindex1, backup=(mode != "plain"))
            break
        except OSError as e:
            if e.errno not in (errno.ENOTCONN, errno.EINVAL) or time.monotonic() - t0 > 2:
                rep["create_error"] = str(e)
                break
            time.sleep(0.002)
    rep["created_after_s"] = round(time.monotonic() - t0, 4)
    if mode == "backup-first" and "create_error" not in rep:
        join = None
        t1 = time.monotonic()
        while time.monotonic() - t1 < 2 and join is None:   # await the join's ESTABLISHED
            join = next((f for f in subflows(s) if f["local"] == local1 and f["state"] == 1), None)
            time.sleep(0.002)
        if join is None:
            rep["join_error"] = "join subflow not established in 2 s"
        else:
            time.sleep(settle)   # the server attaches it at its next socket-lock release
            pm.set_backup(token, local1, join["lport"], server_addr, PORT, backup=False)
            rep["promoted_after_s"] = round(time.monotonic() - t0, 4)
    th.join()
    rep["subflows"] = subflows(s)
    s.shutdown(socket.SHUT_WR)
    line = b""
    while not line.endswith(b"\n"):     # the server's verdict
        c = s.recv(4096)
        if not c:
            break
        line += c
    s.close()
    peer = json.loads(line or b"{}")
    rep.update(bytes_sent=sent[0], peer=peer,
               intact=bool(peer.get("intact")) and peer.get("bytes") == sent[0])
    return rep


# ---- orchestration -------------------------------------------------------------------------
def sh(*cmd: str, ns: str | None = None, check: bool = True) -> str:
    full = (["ip", "netns", "exec", ns] if ns else []) + list(cmd)
    p = subprocess.run(full, capture_output=True, text=True)
    if check and p.returncode:
        raise RuntimeError(f"{' '.join(full)}: exit {p.returncode}: {p.stderr.strip()[-1500:]}")
    return p.stdout


def nstat(ns: str) -> dict:
    d = json.loads(sh("nstat", "-azsj", ns=ns) or "{}")
    return d.get("kernel", d)


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--mode", choices=("plain", "backup-first"), default="plain")
    ap.add_argument("--attempts", type=int, default=20)
    ap.add_argument("--duration", type=float, default=0.8, help="seconds each client streams")
    ap.add_argument("--join-at", default="0.02-0.2",
                    help="open the subflow this many seconds (uniform range) into the transfer")
    ap.add_argument("--settle", type=float, default=0.25, help="backup-first: wait before promotion")
    ap.add_argument("--read-size", type=int, default=1 << 16, help="server recv() buffer")
    ap.add_argument("--role", choices=("server", "client"), help=argparse.SUPPRESS)
    ap.add_argument("--ifindex1", type=int, default=0, help=argparse.SUPPRESS)
    a = ap.parse_args()
    if a.role == "server":
        server(a.read_size)
        return 0
    if a.role == "client":
        join_at = tuple(float(x) for x in a.join_at.split("-"))
        print(json.dumps(client(a.mode, "10.231.0.2", "10.231.1.1", a.ifindex1, a.duration,
                                a.settle, join_at)))
        return 0

    tag = f"mpjr{os.getpid()}"
    c, s = f"{tag}-c", f"{tag}-s"
    srv = None
    try:
        for ns in (c, s):
            sh("ip", "netns", "add", ns)
            sh("ip", "link", "set", "lo", "up", ns=ns)
        for i in (0, 1):
            sh("ip", "link", "add", f"c{i}", "netns", c, "type", "veth", "peer", "name", f"s{i}",
               "netns", s)
            sh("ip", "addr", "add", f"10.231.{i}.1/24", "dev", f"c{i}", ns=c)
            sh("ip", "addr", "add", f"10.231.{i}.2/24", "dev", f"s{i}", ns=s)
            # no TSO/GRO: MSS-sized segments, so one DSS mapping spans many segments
            sh("ethtool", "-K", f"c{i}", "tx", "off", "rx", "off", ns=c)
            sh("ethtool", "-K", f"s{i}", "tx", "off", "rx", "off", ns=s)
            sh("ip", "link", "set", f"c{i}", "up", ns=c)
            sh("ip", "link", "set", f"s{i}", "up", ns=s)
        sh("sysctl", "-qw", "net.mptcp.enabled=1", ns=s)
        sh("sysctl", "-qw", "net.mptcp.enabled=1", "net.mptcp.pm_type=1", ns=c)
        sh("ip", "mptcp", "limits", "set", "subflow", "8", "add_addr_accepted", "8", ns=s)
        ifindex1 = json.loads(sh("ip", "-j", "link", "show", "c1", ns=c))[0]["ifindex"]
        me = os.path.abspath(__file__)
        srv = subprocess.Popen(["ip", "netns", "exec", s, sys.executable, me, "--role", "server",
                                "--read-size", str(a.read_size)],
                               stdout=subprocess.PIPE, text=True)
        assert srv.stdout.readline().strip() == "listening"
        sh("ping", "-c1", "-W2", "10.231.0.2", ns=c)
        sh("ping", "-c1", "-W2", "10.231.1.2", ns=c)
        resets = joined_with_data = intact = 0
        t_start = time.monotonic()
        for i in range(a.attempts):
            n0 = nstat(s)
            out = sh(sys.executable, me, "--role", "client", "--mode", a.mode, "--ifindex1",
                     str(ifindex1), "--duration", str(a.duration), "--settle", str(a.settle),
                     "--join-at", a.join_at, ns=c)
            n1 = nstat(s)
            rep = json.loads(out.strip().splitlines()[-1])
            d = {k: n1.get(k, 0) - n0.get(k, 0) for k in COUNTERS}
            join = [f for f in rep.get("subflows", []) if f["local"] == "10.231.1.1"]
            rep.update(attempt=i, server_delta=d,
                       join_bytes_acked=join[0]["bytes_acked"] if join else 0)
            reset = bool(d["MPTcpExtMPRstTx"] or d["MPTcpExtDSSNotMatching"])
            resets += reset
            joined_with_data += bool(join and join[0]["bytes_acked"] > 0)
            intact += bool(rep.get("intact"))
            rep.pop("subflows", None)
            print(json.dumps(rep), flush=True)
        print(json.dumps({"summary": True, "mode": a.mode, "attempts": a.attempts, "resets": resets,
                          "join_carried_data": joined_with_data, "intact": intact,
                          "kernel": os.uname().release,
                          "seconds": round(time.monotonic() - t_start, 1)}), flush=True)
        return 0
    finally:
        if srv:
            srv.kill()
            srv.wait()
        for ns in (c, s):
            for pid in subprocess.run(["ip", "netns", "pids", ns], capture_output=True,
                                      text=True).stdout.split():
                subprocess.run(["kill", "-9", pid], capture_output=True)
            subprocess.run(["ip", "netns", "del", ns], capture_output=True)


if __name__ == "__main__":
    sys.exit(main())
