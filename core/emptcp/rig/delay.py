"""A userspace delay line: forward Ethernet frames between two interfaces after a fixed delay.

The kernel of the test machines has no netem and no fq/etf (so no EDT delay), and a
TBF/HTB can only delay with a standing queue.  This is the rig's substitute: a process
in a "middle" namespace holds one AF_PACKET raw socket on each of two veths and copies
every frame received on one to the other ``delay`` seconds later, byte for byte (no
checksum or header is touched; it is an L2 wire with latency).  Frames of one direction
leave in arrival order (a constant delay keeps a FIFO sorted).  Each direction holds at
most ``limit`` frames; more are dropped and counted (a bounded queue).

Meant for low rates: a window-limited flow of ~5-30 Mbit/s is ~0.5-3k frames/s, well
within one Python process.  Turn checksum/segmentation offloads off on the end hosts'
veths (``PathSpec(offload=False)``): with offloads on, AF_PACKET sees partial checksums
and super-frames.

Run as a standalone script (imports nothing from emptcp)::

    python delay.py --a IF_A --b IF_B --delay-ms 20 [--limit 4000]

It prints one JSON line ``{"ready": true, ...}`` once both sockets are bound, and on
SIGTERM/SIGINT a JSON line with per-direction frame/drop counts.
"""
from __future__ import annotations

import argparse
import collections
import errno
import json
import select
import signal
import socket
import sys
import time

ETH_P_ALL = 0x0003
SOL_PACKET = 263
PACKET_IGNORE_OUTGOING = 23

_stop = False


def _on_signal(signum, frame):
    global _stop
    _stop = True


def open_if(ifname: str) -> socket.socket:
    s = socket.socket(socket.AF_PACKET, socket.SOCK_RAW, socket.htons(ETH_P_ALL))
    s.setsockopt(SOL_PACKET, PACKET_IGNORE_OUTGOING, 1)   # never see our own transmissions
    s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 8 << 20)
    s.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 8 << 20)
    s.bind((ifname, ETH_P_ALL))
    s.setblocking(False)
    return s


def run(if_a: str, if_b: str, delay: float, limit: int = 4000) -> dict:
    a, b = open_if(if_a), open_if(if_b)
    # direction key = receiving socket; frames go out on the other one
    peer = {a.fileno(): b, b.fileno(): a}
    name = {a.fileno(): f"{if_a}->{if_b}", b.fileno(): f"{if_b}->{if_a}"}
    queue = {a.fileno(): collections.deque(), b.fileno(): collections.deque()}
    stats = {n: {"frames": 0, "bytes": 0, "dropped": 0, "send_errors": 0, "max_queue": 0,
                 "max_frame": 0}
             for n in name.values()}
    ep = select.epoll()
    ep.register(a.fileno(), select.EPOLLIN)
    ep.register(b.fileno(), select.EPOLLIN)
    print(json.dumps({"ready": True, "a": if_a, "b": if_b, "delay_ms": delay * 1e3,
                      "limit": limit}), flush=True)
    while not _stop:
        now = time.monotonic()
        # send everything that is due
        for fd, q in queue.items():
            st = stats[name[fd]]
            out = peer[fd]
            while q and q[0][0] <= now:
                frame = q.popleft()[1]
                try:
                    out.send(frame)
                    st["frames"] += 1
                    st["bytes"] += len(frame)
                    if len(frame) > st["max_frame"]:
                        st["max_frame"] = len(frame)
                except OSError as e:
                    if e.errno not in (errno.EAGAIN, errno.ENOBUFS, errno.ENETDOWN):
                        raise
                    st["send_errors"] += 1
        heads = [q[0][0] for q in queue.values() if q]
        timeout = max(0.0, min(heads) - time.monotonic()) if heads else 0.2
        try:
            events = ep.poll(timeout)
        except InterruptedError:
            continue
        for fd, _ in events:
            sock = a if fd == a.fileno() else b
            q, st = queue[fd], stats[name[fd]]
            while True:
                try:
                    frame = sock.recv(65536)
                except BlockingIOError:
                    break
                except InterruptedError:
                    break
                if len(q) >= limit:
                    st["dropped"] += 1
                    continue
                q.append((time.monotonic() + delay, frame))
                if len(q) > st["max_queue"]:
                    st["max_queue"] = len(q)
    return stats


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(prog="delay.py", description=__doc__.splitlines()[0])
    ap.add_argument("--a", required=True, help="first interface")
    ap.add_argument("--b", required=True, help="second interface")
    ap.add_argument("--delay-ms", type=float, required=True, help="one-way delay (each direction)")
    ap.add_argument("--limit", type=int, default=4000, help="frames queued per direction")
    args = ap.parse_args(argv)
    signal.signal(signal.SIGTERM, _on_signal)
    signal.signal(signal.SIGINT, _on_signal)
    stats = run(args.a, args.b, args.delay_ms / 1e3, args.limit)
    print(json.dumps({"stats": stats}), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
