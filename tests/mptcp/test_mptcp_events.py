"""The path manager's events, as ``emptcp events --mptcp --json`` and the plugin hook show
them, for a scripted two-path MPTCP connection on the rig.

Oracles: the addresses the rig configured, ``ss -tinM`` (tokens, subflow ends, backup
flag) and the interface indexes of the client namespace.
"""
from __future__ import annotations

import json
import os
import select
import shutil
import subprocess
import sys
import time
from typing import Any, Callable

import pytest

from emptcp.rig import PathSpec, Rig

from tests.conftest import require


def emptcp_bin() -> str:
    cand = os.path.join(os.path.dirname(sys.executable), "emptcp")
    return cand if os.path.exists(cand) else shutil.which("emptcp") or "emptcp"


def wait(cond: Callable[[], Any], timeout: float = 10.0, what: str = "condition") -> Any:
    deadline = time.monotonic() + timeout
    while True:
        v = cond()
        if v:
            return v
        assert time.monotonic() < deadline, f"timed out after {timeout} s waiting for {what}"
        time.sleep(0.05)


class LineReader:
    """Lines of a child's pipe, read without blocking past a deadline."""

    def __init__(self, pipe) -> None:
        self.pipe, self.buf, self.lines = pipe, b"", []

    def pump(self, timeout: float) -> None:
        r, _, _ = select.select([self.pipe], [], [], timeout)
        if r:
            chunk = os.read(self.pipe.fileno(), 65536)
            self.buf += chunk
            *done, self.buf = self.buf.split(b"\n")
            self.lines += [d.decode() for d in done]

    def until(self, pred: Callable[[list[str]], bool], timeout: float, what: str) -> list[str]:
        deadline = time.monotonic() + timeout
        while not pred(self.lines):
            left = deadline - time.monotonic()
            assert left > 0, f"timed out waiting for {what}; got:\n" + "\n".join(self.lines)
            self.pump(min(left, 0.2))
        return self.lines


@pytest.fixture
def rig(root):
    require(os.path.exists("/proc/sys/net/mptcp/enabled"), "kernel without MPTCP")
    for tool in ("ip", "ss", "nsenter"):
        require(shutil.which(tool) is not None, f"{tool} is not installed")
    # path 1 is a backup subflow endpoint: the backup flag must come through
    with Rig([PathSpec(), PathSpec(backup=True)], prefix="emev") as r:
        yield r


def two_subflows(rig: Rig, port: int):
    sfs = rig.client.subflows(port)
    return sfs if len(sfs) == 2 and all("e" in s.sf_flags for s in sfs) else None


def test_events_mptcp_json_shows_the_connection_in_order(rig):
    from emptcp.mptcp.events import MptcpEventMonitor
    p0, p1 = rig.paths
    server_mon = MptcpEventMonitor(rig.server.ns)
    mon = subprocess.Popen(["nsenter", f"--net=/var/run/netns/{rig.client.ns}", "--",
                            emptcp_bin(), "events", "--mptcp", "--json", "--timeout", "60"],
                           stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    try:
        err = LineReader(mon.stderr)
        err.until(lambda ls: any("listening" in line for line in ls), 15, "the subscription")
        srv = rig.start_server()
        cli = rig.start_client(srv.port, forever=True)
        sfs = wait(lambda: two_subflows(rig, srv.port), 15, "two established subflows")
        ss_all = rig.client.ss()
        server_sfs = rig.server.subflows(srv.port)
        (msk,) = [e for e in ss_all if e.netid == "mptcp" and e.rport == srv.port]
        token = int(msk.token, 16)
        initial = next(s for s in sfs if not s.is_join)
        join = next(s for s in sfs if s.is_join)
        rep = cli.stop()
        assert rep["intact"]
        out = LineReader(mon.stdout)
        lines = out.until(lambda ls: any('"closed"' in line for line in ls), 15,
                          "the closed event")
        server_events = list(server_mon.events(timeout=0.5))
    finally:
        mon.terminate()
        mon.wait(10)
        server_mon.close()
    events = [json.loads(line) for line in lines if line.strip()]
    mine = [e for e in events if e.get("token") == token]
    types = [e["type"] for e in mine]
    assert types[:3] == ["created", "established", "sub_established"], types
    assert types[-1] == "closed", types
    assert set(types) <= {"created", "established", "sub_established", "sub_closed",
                          "announced", "removed", "sub_priority", "closed"}, types
    assert all(e["source"] == "mptcp_pm" and e["token_hex"] == msk.token for e in mine)
    created, established, sub = mine[0], mine[1], mine[2]
    for ev in (created, established):                 # the initial subflow's four-tuple
        assert ev["family"] == 4
        assert (ev["saddr"], ev["sport"], ev["daddr"], ev["dport"]) == \
            (p0.client_addr, initial.lport, p0.server_addr, srv.port) == \
            (initial.local, initial.lport, initial.remote, initial.rport)
    # the join: from path 1's address, on path 1's interface, marked backup (ss: local 'b')
    assert (sub["saddr"], sub["sport"], sub["daddr"], sub["dport"]) == \
        (join.local, join.lport, join.remote, join.rport)
    assert sub["saddr"] == p1.client_addr
    assert sub["ifindex"] == p1.client_ifindex
    # the kernel's backup attribute is the subflow's backup bit as received from the peer
    # (ss 'B'): the client asked for backup (ss 'b'), so the client sees 0, the server 1
    assert sub["backup"] is False and join.backup and not join.peer_backup
    srv_sub = [e for e in server_events if e.type == "sub_established"]
    (srv_join,) = [s for s in server_sfs if s.is_join]
    assert [(e.saddr, e.sport, e.daddr, e.dport, e.backup) for e in srv_sub] == \
        [(srv_join.local, srv_join.lport, srv_join.remote, srv_join.rport, True)]
    assert srv_join.peer_backup
    assert sub["loc_id"] == 2 and "error" not in sub
    # every event of the connection carries a time; they arrive in time order
    times = [e["time"] for e in mine]
    assert times == sorted(times)


def test_plugin_hook_gets_the_events_in_process(rig):
    """PluginManager.handle_mptcp_event feeds a plugin's emptcp_handle_mptcp_event."""
    from emptcp.mptcp.events import MptcpEventMonitor
    from emptcp.plugins import hookimpl
    from emptcp.plugins.manager import PluginManager

    seen: list = []

    class Recorder:
        @hookimpl
        def emptcp_handle_mptcp_event(self, event):
            seen.append(event)
            return event.type

    class Broken:
        @hookimpl
        def emptcp_handle_mptcp_event(self, event):
            raise RuntimeError("boom")

    pm = PluginManager(builtins=False, entrypoints=False)
    assert pm.register(Broken(), "broken").ok and pm.register(Recorder(), "recorder").ok
    assert pm.wants("emptcp_handle_mptcp_event")
    errors: list = []
    with MptcpEventMonitor(rig.client.ns) as mon:
        srv = rig.start_server()
        cli = rig.start_client(srv.port, nbytes=1 << 20)
        deadline = time.monotonic() + 15
        while not any(e.type == "closed" for e in seen):
            assert time.monotonic() < deadline, [str(e) for e in seen]
            for ev in mon.read(0.2):
                assert pm.handle_mptcp_event(ev, on_error=errors.append) == \
                    [("recorder", ev.type)]
        assert cli.result()["intact"]
    assert seen[0].type == "created" and seen[0].netns == rig.client.ns
    assert seen[0].daddr == rig.paths[0].server_addr and seen[0].dport == srv.port
    assert errors and all("broken" in str(e) and "boom" in str(e) for e in errors)


RUN_POLICY = """
[hooks.path1]
interface = "{iface}"
type = "tc-egress"

[[policy]]
name = "count-path1"
hook = "path1"
actions = [ {{ use = "count" }} ]
"""


def test_run_serves_the_hook_and_status_lists_the_connection(rig, tmp_path):
    """emptcp run (emptcp-mptcp's emptcp_handle_mptcp_event logs each event) and
    emptcp status --json (connections on hooked interfaces, subflows, backup), both inside
    the client namespace; oracles: ss -tinM and the rig's addresses."""
    from emptcp.plugins.manager import PluginManager
    require(PluginManager().wants("emptcp_handle_mptcp_event"),
            "emptcp-mptcp (emptcp_handle_mptcp_event) not installed")
    import uuid
    p0, p1 = rig.paths
    pin_root = f"/sys/fs/bpf/emptcp-test-{uuid.uuid4().hex[:10]}"
    cfg = tmp_path / "run.toml"
    cfg.write_text(RUN_POLICY.format(iface=p1.client_if))
    ns = ["nsenter", f"--net=/var/run/netns/{rig.client.ns}", "--"]
    run = subprocess.Popen(ns + [emptcp_bin(), "-v", "run", str(cfg), "--pin-root", pin_root,
                                 "--timeout", "60"], stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    try:
        LineReader(run.stdout).until(lambda ls: any("applied generation" in x for x in ls), 30,
                                     "emptcp run to apply")
        srv = rig.start_server()
        cli = rig.start_client(srv.port, forever=True)
        sfs = wait(lambda: two_subflows(rig, srv.port), 15, "two established subflows")
        (msk,) = [e for e in rig.client.ss() if e.netid == "mptcp" and e.rport == srv.port]
        join = next(s for s in sfs if s.is_join)
        err = LineReader(run.stderr)
        err.until(lambda ls: any("sub_established" in x for x in ls), 15, "sub_established")
        st = json.loads(subprocess.run(ns + [emptcp_bin(), "status", "--json", "--pin-root",
                                              pin_root], capture_output=True, text=True,
                                             check=True).stdout)
        text = subprocess.run(ns + [emptcp_bin(), "status", "--pin-root", pin_root],
                              capture_output=True, text=True, check=True).stdout
        rep = cli.stop()
        assert rep["intact"]
        err.until(lambda ls: any(" closed token=" in x for x in ls), 15, "closed")
    finally:
        run.terminate()
        run.wait(20)
        subprocess.run(ns + [emptcp_bin(), "detach", "--all", "--pin-root", pin_root],
                       capture_output=True)
    logged = [x for x in err.lines if "plugin mptcp: mptcp event" in x]
    kinds = [x.split("mptcp event ", 1)[1].split()[0] for x in logged
             if f"token={msk.token}" in x]
    assert kinds[:3] == ["created", "established", "sub_established"] and kinds[-1] == "closed"
    sub_line = next(x for x in logged if "sub_established" in x)
    assert f"local={join.local}:{join.lport}" in sub_line
    assert f"remote={join.remote}:{join.rport}" in sub_line
    # status: the connection has a subflow over the hooked interface (path 1)
    (conn,) = st["mptcp"]["connections"]
    assert conn["token"] == msk.token and conn["policies"] == ["count-path1"]
    assert (conn["local"], conn["lport"], conn["remote"], conn["rport"]) == \
        (msk.local, msk.lport, msk.remote, msk.rport)
    got = sorted((s["local"], s["lport"], s["remote"], s["rport"], s["iface"], s["backup"])
                 for s in conn["subflows"])
    want = sorted((s.local, s.lport, s.remote, s.rport,
                   p1.client_if if s.local == p1.client_addr else p0.client_if, s.backup)
                  for s in sfs)
    assert got == want
    assert [s["backup"] for s in conn["subflows"] if s["local"] == p1.client_addr] == [True]
    assert [s["hooks"] for s in conn["subflows"] if s["local"] == p1.client_addr] == [["path1"]]
    assert f"token {msk.token}" in text and "backup" in text
