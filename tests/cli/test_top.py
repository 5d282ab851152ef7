"""`emptcp top --once --json`: rates against a packet rate the test sends itself.

A sender in namespace B paces UDP datagrams on an absolute schedule (it catches
up after a late wake-up, so its average rate over any second is the nominal
one); emptcp counts them on veth0's XDP hook in namespace A.
"""
from __future__ import annotations

import json
import socket
import threading
import time

import pytest

from emptcp.netns import enter

from .conftest import A_ADDR0, Host, nsrun

pytestmark = pytest.mark.slow

POLICY = """\
[hooks.in]
interface = "veth0"
type = "xdp"

[[policy]]
name = "everything"
hook = "in"
actions = [ { use = "count" } ]
"""
RATE = 200          # datagrams per second
PAYLOAD = 100       # UDP payload: frame = 14 + 20 + 8 + 100 = 142 bytes at XDP
FRAME = 142


class Sender(threading.Thread):
    def __init__(self, ns: str) -> None:
        super().__init__(daemon=True)
        with enter(ns):
            self.sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.stopping = False
        self.sent = 0

    def run(self) -> None:
        start = time.monotonic()
        while not self.stopping:
            due = start + self.sent / RATE
            now = time.monotonic()
            if due > now:
                time.sleep(due - now)
            self.sock.sendto(b"x" * PAYLOAD, (A_ADDR0, 9999))
            self.sent += 1


def test_top_once_json_matches_a_known_rate(host: Host, tmp_path) -> None:
    for ns in (host.ns, host.peer):
        nsrun(ns, "sysctl", "-qw", "net.ipv6.conf.all.disable_ipv6=1")
    cfg = tmp_path / "policy.toml"
    cfg.write_text(POLICY)
    host.apply(str(cfg))
    nsrun(host.peer, "ping", "-c", "1", "-W", "2", A_ADDR0)   # ARP resolved before timing
    sender = Sender(host.peer)
    sender.start()
    try:
        time.sleep(1.0)
        out = host.ok("top", "--once", "--json", "--interval", "3").stdout
        text = host.ok("top", "--once", "--interval", "0.5").stdout
    finally:
        sender.stopping = True
        sender.join(5)
    r = json.loads(out)
    assert r["applied"] and not r["generation_changed"]
    assert 2.5 < r["interval_s"] < 4.0
    hook = r["hooks"][0]
    print(f"\nsent {RATE}/s; top: hook {hook['packets_per_s']:.1f}/s, stage "
          f"{hook['policies'][0]['stages'][0]['bytes_per_s']:.0f} B/s (want {RATE * FRAME})")
    assert hook["name"] == "in" and hook["type"] == "xdp"
    for got, want in ((hook["packets_per_s"], RATE), (hook["matched_per_s"], RATE),
                      (hook["policies"][0]["matched_per_s"], RATE),
                      (hook["policies"][0]["stages"][0]["packets_per_s"], RATE),
                      (hook["policies"][0]["stages"][0]["bytes_per_s"], RATE * FRAME)):
        assert abs(got - want) <= 0.10 * want, (got, want, r)
    assert hook["unmatched_per_s"] == 0 and hook["errors_per_s"] == 0
    lines = text.splitlines()
    assert max(len(ln) for ln in lines) <= 80, lines
    assert any(ln.lstrip().startswith("everything") for ln in lines), lines


def test_top_bad_input(host: Host) -> None:
    for args in (("top", "--interval", "0", "--once"), ("top", "--json")):
        p = host.cli(*args)
        assert p.returncode == 2 and "Traceback" not in p.stderr, p.stderr


def test_top_live_view_refreshes_and_q_quits(host: Host, tmp_path) -> None:
    """The live view on a terminal (a pty): it redraws, fits 80 columns, and q ends it."""
    import os
    import pty
    import re
    import subprocess
    cfg = tmp_path / "policy.toml"
    cfg.write_text(POLICY)
    host.apply(str(cfg))
    master, slave = pty.openpty()
    env = dict(os.environ, COLUMNS="80", LINES="24")
    proc = subprocess.Popen(host.argv("top", "--interval", "0.3"), stdin=slave, stdout=slave,
                            stderr=subprocess.PIPE, env=env, close_fds=True)
    os.close(slave)
    out = b""
    try:
        deadline = time.monotonic() + 30
        # three redraws: the screen between the second and the third is complete (the
        # last one may still be arriving when the read returns)
        while out.count(b"\x1b[2J") < 3 and time.monotonic() < deadline:
            out += os.read(master, 65536)
        os.write(master, b"q")
        proc.wait(timeout=10)
    finally:
        if proc.poll() is None:
            proc.kill()
        os.close(master)
    assert proc.returncode == 0, proc.stderr.read()  # type: ignore[union-attr]
    screen = out.decode(errors="replace").split("\x1b[H\x1b[2J")[-2]
    lines = [re.sub(r"\x1b\[[0-9;]*[A-Za-z]", "", ln) for ln in screen.splitlines()]
    assert any("everything" in ln for ln in lines), lines
    assert max(len(ln.rstrip("\r")) for ln in lines) <= 80, lines
