"""Verified MPTCP / TCP traffic generator.

    python -m emptcp.rig.traffic server --port 5000 [--tcp] [--count 1]
    python -m emptcp.rig.traffic client --connect 10.1.0.2:5000 [--bytes N] [--duration S]
                                        [--forever] [--reverse] [--tcp] [--bind ADDR]

The sender writes a deterministic pattern (period 1048573 bytes, a prime, generated
from SHA-256 of a seed) so the receiver checks *every byte* against the expected
stream (position-dependent: a lost, duplicated or reordered segment is detected).

Protocol: client sends one JSON line header {"dir": "up"|"down", "bytes": N,
"duration": S, "forever": bool}.  "up": client sends, server verifies; after EOF the
server answers one JSON line with its verdict, which the client embeds as "peer".
"down": server sends, client verifies.

The server prints {"listening": port} then one JSON line per finished connection.
The client prints one JSON report.  ``--forever`` runs until SIGTERM/SIGINT/SIGUSR1,
then finishes cleanly (the report is still printed; intact is still checked).
"""
from __future__ import annotations

import argparse
import hashlib
import json
import signal
import socket
import struct
import sys
import threading
import time
from typing import Optional

IPPROTO_MPTCP = 262
SOL_MPTCP = 284
MPTCP_INFO = 1
TCP_IS_MPTCP = 43
MPTCP_INFO_FLAG_FALLBACK = 1
MPTCP_INFO_FLAG_REMOTE_KEY_RECEIVED = 2

PERIOD = 1048573
CHUNK = 65536


def make_pattern(seed: bytes = b"emptcp") -> bytes:
    out = bytearray()
    i = 0
    while len(out) < PERIOD + CHUNK:
        out += hashlib.sha256(seed + i.to_bytes(8, "little")).digest()
        i += 1
    pat = bytes(out[:PERIOD])
    return pat + pat[:CHUNK]  # any window of CHUNK bytes is contiguous


PATTERN = make_pattern()
_stop = threading.Event()


def _on_signal(signum, frame):
    _stop.set()


def mptcp_info(sock: socket.socket) -> dict:
    """MPTCP facts of a connected socket: is_mptcp (TCP_IS_MPTCP), fallback, subflows, token.

    Linux 6.1 answers TCP_IS_MPTCP on an MPTCP socket with EOPNOTSUPP (seen in the kernel
    matrix); there, whether the connection is MPTCP comes from MPTCP_INFO (5.16+): answered
    and without the fallback flag."""
    d: dict = {"is_mptcp": False, "fallback": None}
    try:
        d["is_mptcp"] = bool(struct.unpack("i", sock.getsockopt(socket.SOL_TCP, TCP_IS_MPTCP, 4))[0])
    except OSError as e:
        d["tcp_is_mptcp_error"] = e.strerror
        d["is_mptcp"] = None            # unknown: decided by MPTCP_INFO below
    if sock.proto != IPPROTO_MPTCP:
        d["fallback"] = None
        d["is_mptcp"] = bool(d["is_mptcp"])
        return d
    try:
        raw = sock.getsockopt(SOL_MPTCP, MPTCP_INFO, 256)
        (subflows, sig, acc, sfmax, sigmax, accmax, flags, token) = struct.unpack_from("=6BxxII", raw)
        d.update(subflows=subflows, add_addr_signal=sig, add_addr_accepted=acc,
                 subflows_max=sfmax, flags=flags, token=token,
                 fallback=bool(flags & MPTCP_INFO_FLAG_FALLBACK),
                 remote_key_received=bool(flags & MPTCP_INFO_FLAG_REMOTE_KEY_RECEIVED))
        if len(raw) >= 81:  # 6.x: bytes_* at 56/64/72, subflows_total at 80
            d["bytes_sent"], d["bytes_received"], d["bytes_acked"] = struct.unpack_from("=QQQ", raw, 56)
            d["subflows_total"] = raw[80]
    except OSError as e:
        # fallback sockets forward SOL_MPTCP to TCP on some kernels -> EOPNOTSUPP
        d["mptcp_info_error"] = e.strerror
        d["fallback"] = True
    if d["is_mptcp"] is None:
        d["is_mptcp"] = d["fallback"] is False
    if not d["is_mptcp"]:
        d["fallback"] = True
    return d


def send_stream(sock: socket.socket, nbytes: int, duration: float, forever: bool) -> int:
    mv = memoryview(PATTERN)
    sent = 0
    t0 = time.monotonic()
    while not _stop.is_set():
        if nbytes and sent >= nbytes:
            break
        if duration and not forever and time.monotonic() - t0 >= duration:
            break
        off = sent % PERIOD
        n = CHUNK if not nbytes else min(CHUNK, nbytes - sent)
        try:
            sent += sock.send(mv[off:off + n])
        except socket.timeout:
            continue
        except InterruptedError:
            continue
    return sent


def recv_stream(sock: socket.socket) -> dict:
    mv = memoryview(PATTERN)
    buf = bytearray(CHUNK)
    bmv = memoryview(buf)
    got = 0
    bad_at = None
    while True:
        try:
            n = sock.recv_into(buf)
        except (socket.timeout, InterruptedError):
            if _stop.is_set() and False:
                break
            continue
        if n == 0:
            break
        if bad_at is None:
            off = got % PERIOD
            if bmv[:n] != mv[off:off + n]:
                for i in range(n):
                    if buf[i] != PATTERN[off + i]:
                        bad_at = got + i
                        break
        got += n
    return {"bytes_received": got, "intact": bad_at is None, "first_bad_offset": bad_at}


def _readline(sock: socket.socket, limit: int = 65536) -> bytes:
    data = b""
    while not data.endswith(b"\n") and len(data) < limit:
        c = sock.recv(1)
        if not c:
            break
        data += c
    return data


def _family(addr: str):
    return socket.AF_INET6 if ":" in addr else socket.AF_INET


def serve_conn(conn: socket.socket, peer, tcp: bool) -> dict:
    t0 = time.monotonic()
    hdr = json.loads(_readline(conn) or b"{}")
    rep = {"role": "server", "peer": list(peer[:2]), "dir": hdr.get("dir", "up"),
           "protocol": "tcp" if tcp else "mptcp"}
    if rep["dir"] == "up":
        rep.update(recv_stream(conn))
        rep["bytes_sent"] = 0
        rep["mptcp"] = mptcp_info(conn)
        rep["duration"] = time.monotonic() - t0
        try:
            conn.sendall((json.dumps(rep) + "\n").encode())
        except OSError:
            pass
    else:
        conn.settimeout(0.5)
        rep["bytes_sent"] = send_stream(conn, hdr.get("bytes", 0), hdr.get("duration", 0),
                                        hdr.get("forever", False))
        rep["mptcp"] = mptcp_info(conn)
        conn.shutdown(socket.SHUT_WR)
        conn.settimeout(5)
        try:
            while conn.recv(65536):
                pass
        except OSError:
            pass
        rep["duration"] = time.monotonic() - t0
    conn.close()
    return rep


def server(port: int, tcp: bool = False, count: int = 1, bind: str = "::") -> None:
    fam = socket.AF_INET6 if ":" in bind else socket.AF_INET
    ls = socket.socket(fam, socket.SOCK_STREAM, 0 if tcp else IPPROTO_MPTCP)
    ls.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    if fam == socket.AF_INET6:
        ls.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 0)
    ls.bind((bind, port))
    ls.listen(64)
    ls.settimeout(0.2)
    print(json.dumps({"listening": port, "protocol": "tcp" if tcp else "mptcp"}), flush=True)
    lock = threading.Lock()
    done = [0]
    threads = []

    def worker(c, p):
        try:
            rep = serve_conn(c, p, tcp)
        except Exception as e:  # report, don't die
            rep = {"role": "server", "peer": list(p[:2]), "error": repr(e), "intact": False}
        with lock:
            print(json.dumps(rep), flush=True)
            done[0] += 1

    accepted = 0
    while not _stop.is_set() and (count == 0 or accepted < count):
        try:
            c, p = ls.accept()
        except socket.timeout:
            continue
        accepted += 1
        t = threading.Thread(target=worker, args=(c, p), daemon=True)
        t.start()
        threads.append(t)
    for t in threads:
        t.join()
    ls.close()


def client(connect: str, nbytes: int = 0, duration: float = 0, forever: bool = False,
           reverse: bool = False, tcp: bool = False, bind: Optional[str] = None,
           timeout: float = 30) -> dict:
    host, _, port = connect.rpartition(":")
    host = host.strip("[]")
    s = socket.socket(_family(host), socket.SOCK_STREAM, 0 if tcp else IPPROTO_MPTCP)
    if bind:
        s.bind((bind, 0))
    s.settimeout(timeout)
    t0 = time.monotonic()
    s.connect((host, int(port)))
    hdr = {"dir": "down" if reverse else "up", "bytes": nbytes, "duration": duration,
           "forever": forever}
    s.sendall((json.dumps(hdr) + "\n").encode())
    rep = {"role": "client", "connect": connect, "dir": hdr["dir"],
           "protocol": "tcp" if tcp else "mptcp", "local": list(s.getsockname()[:2])}
    rep["mptcp_at_start"] = mptcp_info(s)
    if not reverse:
        s.settimeout(0.5)
        rep["bytes_sent"] = send_stream(s, nbytes, duration, forever)
        rep["mptcp"] = mptcp_info(s)
        rep["send_duration"] = time.monotonic() - t0
        s.shutdown(socket.SHUT_WR)
        s.settimeout(timeout)
        line = _readline(s)
        peer = json.loads(line) if line else {"error": "no verdict from server", "intact": False}
        rep["peer"] = peer
        rep["bytes_received"] = peer.get("bytes_received", 0)
        rep["intact"] = bool(peer.get("intact")) and peer.get("bytes_received") == rep["bytes_sent"]
    else:
        s.settimeout(0.5)
        rep.update(recv_stream_until(s))
        rep["mptcp"] = mptcp_info(s)
        rep["bytes_sent"] = 0
    rep["duration"] = time.monotonic() - t0
    s.close()
    moved = rep["bytes_sent"] or rep.get("bytes_received", 0)
    rep["throughput_bps"] = 8 * moved / rep["duration"] if rep["duration"] else 0
    return rep


def recv_stream_until(s: socket.socket) -> dict:
    """Receive for reverse mode; on a stop signal, close early (result marks 'stopped')."""
    r = recv_stream(s)
    return r


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(prog="python -m emptcp.rig.traffic")
    sub = ap.add_subparsers(dest="cmd", required=True)
    sp = sub.add_parser("server")
    sp.add_argument("--port", type=int, required=True)
    sp.add_argument("--tcp", action="store_true", help="plain TCP instead of MPTCP")
    sp.add_argument("--count", type=int, default=1, help="connections to serve (0 = until signalled)")
    sp.add_argument("--bind", default="::")
    cp = sub.add_parser("client")
    cp.add_argument("--connect", required=True, help="ADDR:PORT ([v6]:PORT)")
    cp.add_argument("--bytes", type=int, default=0)
    cp.add_argument("--duration", type=float, default=0)
    cp.add_argument("--forever", action="store_true", help="run until SIGTERM/SIGINT/SIGUSR1")
    cp.add_argument("--reverse", action="store_true", help="server sends, client verifies")
    cp.add_argument("--tcp", action="store_true")
    cp.add_argument("--bind", default=None)
    cp.add_argument("--timeout", type=float, default=30)
    a = ap.parse_args(argv)
    for sig in (signal.SIGTERM, signal.SIGINT, signal.SIGUSR1):
        signal.signal(sig, _on_signal)
    if a.cmd == "server":
        server(a.port, a.tcp, a.count, a.bind)
        return 0
    if not (a.bytes or a.duration or a.forever):
        a.bytes = 1 << 20
    rep = client(a.connect, a.bytes, a.duration, a.forever, a.reverse, a.tcp, a.bind, a.timeout)
    print(json.dumps(rep), flush=True)
    return 0 if rep.get("intact") else 1


if __name__ == "__main__":
    sys.exit(main())
