"""Run-time entries on a real MPTCP connection (issue 9, acceptance): a tcp4tuple selector
holding 10 000 other connections; adding the path-1 subflow's 4-tuple at run time makes
set_flow_priority mark it backup, and 10 000 entry changes per second during the transfer
never misclassify a packet. Judged by the kernel (nstat, ss) and the wire (tshark), not by
emptcp's counters.

Client namespace: tc-egress on the path-1 interface, policy `conns`:
tcp4tuple (entries file: 10 000 decoys) -> count, set_flow_priority(backup).
"""
from __future__ import annotations

import random
import threading
import time

import pytest

from .. import kernel
from ..kernel import delta, wait_for
from .scenario import both_paths_carry, path_links, rig

pytestmark = pytest.mark.slow

MP_PRIO = 5
CONFIG = """\
[hooks.path1]
interface = "{ifname}"
type = "tc-egress"

[[policy]]
name = "conns"
hook = "path1"
selectors = [ {{ use = "tcp4tuple", entries = "decoys.txt" }} ]
actions = [ {{ use = "count" }}, {{ use = "set_flow_priority", backup = true }} ]
"""


def decoys(rng: random.Random, local: str, remote: str, n: int, taken: set[int]) -> list[dict]:
    """n connections that are not the real ones: same addresses, other local ports."""
    ports = rng.sample([p for p in range(1024, 65536) if p not in taken], n)
    return [{"local_addr": local, "local_port": p, "remote_addr": remote, "remote_port": 9}
            for p in ports]


def test_run_time_entry_selects_a_live_subflow_under_churn(mptcp_kernel, mptcp_plugin, tmp_path):
    from emptcp import api
    from emptcp.rig import PathSpec
    from emptcp.runtime.flows import Flows
    seed = random.randrange(1 << 30)
    print(f"seed {seed}")
    rng = random.Random(seed)
    pin_root = f"/sys/fs/bpf/emptcp-flows-{seed:x}"
    with rig(paths=[PathSpec(rate="40mbit"), PathSpec(rate="40mbit")]) as r:
        p0, p1 = r.paths
        C, S = r.client.ns, r.server.ns
        srv = r.start_server()
        static = decoys(rng, p1.client_addr, p1.server_addr, 10_000, set())
        (tmp_path / "decoys.txt").write_text("".join(
            f"{e['local_addr']} {e['local_port']} {e['remote_addr']} {e['remote_port']}\n"
            for e in static))
        cfg = tmp_path / "conns.toml"
        cfg.write_text(CONFIG.format(ifname=p1.client_if))
        try:
            with r.client.enter():
                api.apply(str(cfg), pin_root)
            cli = r.start_client(srv.port, forever=True, reverse=True, timeout=40)
            wait_for(lambda: len(kernel.subflows(S, srv.port)) >= 2, 10, "two subflows")
            l0 = path_links(r, "server")
            wait_for(lambda: both_paths_carry(r, "server", "tx_bytes", l0, 512 << 10), 15,
                     "both paths carry the download")
            sub = wait_for(lambda: [s for s in kernel.subflows(C, srv.port)
                                    if s.local == p1.client_addr], 5, "the client's path-1 subflow")[0]
            # the 4-tuple as the kernel reports it (the join goes to the server's first
            # address, not to its path-1 one)
            real = {"local_addr": sub.local, "local_port": sub.lport,
                    "remote_addr": sub.remote, "remote_port": sub.rport}
            flows = Flows(pin_root)
            stop = threading.Event()
            errors: list[BaseException] = []
            churned = [0]
            taken = {e["local_port"] for e in static} | {sub.lport}

            def churn() -> None:
                """10 000 changes per second: add 1 000 fresh decoys, remove them, repeat."""
                try:
                    while not stop.is_set():
                        t0 = time.monotonic()
                        batch = decoys(rng, p1.client_addr, p1.server_addr, 1000, taken)
                        flows.add("conns", batch)
                        flows.delete("conns", batch)
                        churned[0] += 2 * len(batch)
                        time.sleep(max(0.0, 0.2 - (time.monotonic() - t0)))
                except BaseException as e:   # reported by the main thread
                    errors.append(e)
            worker = threading.Thread(target=churn, daemon=True)
            n0 = kernel.nstat(S)
            worker.start()
            try:
                # churn alone, 10 000 decoys: the real subflow is not selected
                time.sleep(2)
                assert delta(n0, kernel.nstat(S), "MPTcpExtMPPrioRx") == 0, \
                    "MP_PRIO before the subflow's entry was added"
                flows.add("conns", [real])
                wait_for(lambda: delta(n0, kernel.nstat(S), "MPTcpExtMPPrioRx") > 0, 10,
                         "the server receives MP_PRIO after the entry is added")
                wait_for(lambda: [s for s in kernel.subflows(S, srv.port)
                                  if s.remote == p1.client_addr and "B" in s.mptcp_flags], 10,
                         "ss: the server's path-1 subflow is backup")
                # from here every packet of that subflow leaving the client carries MP_PRIO(B)
                cap = r.server.capture(p1.server_if, f"tcp and src host {p1.client_addr} and "
                                       f"src port {sub.lport}", snaplen=128)
                cap.start()
                # what was queued on path 1 before the flag drains first: 1 MiB on path 0
                l1 = path_links(r, "server")
                wait_for(lambda: kernel.link(S, p0.server_if)["tx_bytes"] - l1[0]["tx_bytes"]
                         > 1 << 20, 15, "path 0 carries 1 MiB after the flag")
                l1 = path_links(r, "server")
                wait_for(lambda: kernel.link(S, p0.server_if)["tx_bytes"] - l1[0]["tx_bytes"]
                         > 3 << 20, 20, "path 0 carries 3 MiB more")
                cap.stop()
                after = [kernel.link_delta(b, n) for b, n in zip(l1, path_links(r, "server"))]
            finally:
                stop.set()
                worker.join(30)
            assert not errors, errors
            srv_rep = srv.stop()
            rep = cli.result(20)
            pkts = cap.packets("tcp")
            print({"churned": churned[0], "path1_packets": len(pkts), "after": after})
            assert churned[0] >= 10_000, churned
            assert rep["intact"] and srv_rep and srv_rep[0].get("bytes_sent") == rep["bytes_received"]
            assert pkts, "no path-1 packets from the client captured"
            missing = [p.number for p in pkts if MP_PRIO not in p.mptcp_subtypes
                       or p.mptcp_backup != [1]]
            assert not missing, f"{len(missing)} of {len(pkts)} packets without MP_PRIO(B): {missing[:10]}"
            assert after[1]["tx_bytes"] <= 0.05 * (after[0]["tx_bytes"] + after[1]["tx_bytes"]), after
        finally:
            with r.client.enter():
                api.detach(pin_root=pin_root, all=True)
