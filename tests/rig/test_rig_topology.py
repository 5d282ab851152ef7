"""The rig itself: topology, teardown, exception safety, shaping, setns."""
import os
import subprocess
import time

import pytest

from emptcp.rig import Rig, PathSpec, cleanup_stale
from emptcp import netns


def _netns_names():
    return set(os.listdir(netns.NETNS_RUN_DIR)) if os.path.isdir(netns.NETNS_RUN_DIR) else set()


def _gone(rig):
    names = _netns_names()
    return rig.client.ns not in names and rig.server.ns not in names


def test_topology_names_addresses_ifindex():
    with Rig(3, ipv6=True) as rig:
        assert len(rig.paths) == 3
        assert {rig.client.ns, rig.server.ns} <= _netns_names()
        for i, p in enumerate(rig.paths):
            assert (p.client_addr, p.server_addr) == (f"10.77.{i}.1", f"10.77.{i}.2")
            ci, si = p.client_ifindex, p.server_ifindex
            assert ci > 1 and si > 1
            links = rig.client.link_stats()
            assert links[p.client_if]["ifindex"] == ci
        # every path reachable, v4 and v6, with addresses of its own subnet
        for p in rig.paths:
            rig.client.run(["ping", "-c1", "-W1", "-I", p.client_if, p.server_addr])
            rig.client.run(["ping", "-6", "-c1", "-W1", p.server_addr6])
        # interfaces live only in the namespaces, never in the root netns
        root = subprocess.run(["ip", "-o", "link"], capture_output=True, text=True).stdout
        assert rig.tag not in root
    assert _gone(rig)


def test_two_rigs_do_not_collide():
    with Rig(2) as a, Rig(2) as b:
        assert a.client.ns != b.client.ns and a.paths[0].client_if != b.paths[0].client_if
        ra, rb = a.transfer(nbytes=1 << 20), b.transfer(nbytes=1 << 20)
        assert ra["intact"] and rb["intact"], (ra, rb)
    assert _gone(a) and _gone(b)


def test_exception_in_body_tears_down_everything():
    with pytest.raises(RuntimeError, match="boom"):
        with Rig(2) as rig:
            srv = rig.start_server(count=0)
            pid = srv.proc.pid
            raise RuntimeError("boom")
    assert _gone(rig)
    with pytest.raises(ProcessLookupError):
        os.kill(pid, 0)


def test_keyboard_interrupt_tears_down():
    with pytest.raises(KeyboardInterrupt):
        with Rig(2) as rig:
            raise KeyboardInterrupt
    assert _gone(rig)


def test_setup_failure_tears_down():
    rig = Rig([PathSpec(), PathSpec(rate="10mbit", qdisc="bogus")])
    with pytest.raises(ValueError, match="bogus"):
        with rig:
            pytest.fail("body must not run")
    assert _gone(rig) and not rig.up


def test_cleanup_stale():
    name = "emptcpstale-test-c"
    subprocess.run(["ip", "netns", "add", name], check=True)
    assert name in _netns_names()
    assert name in cleanup_stale("emptcpstale")
    assert name not in _netns_names()


def test_enter_keeps_root_sysfs_and_sees_namespace_links():
    with Rig(2) as rig:
        bpffs_before = os.stat("/sys/fs/bpf")
        with rig.client.enter():
            import socket
            assert socket.if_nametoindex(rig.paths[1].client_if) == rig.paths[1].client_ifindex
            st = os.stat("/sys/fs/bpf")  # /sys not remounted: same root bpffs dir
            assert (st.st_dev, st.st_ino) == (bpffs_before.st_dev, bpffs_before.st_ino)
        with pytest.raises(OSError):
            socket.if_nametoindex(rig.paths[1].client_if)  # back in the root netns
        # nsenter-run commands see the namespace's links too
        assert rig.paths[0].client_if in rig.client.out(["ip", "-o", "link"])


def test_offload_off_is_applied():
    with Rig([PathSpec(offload=True), PathSpec()]) as rig:  # off is the default
        for side, dev, want in ((rig.client, rig.paths[1].client_if, "off"),
                                (rig.server, rig.paths[1].server_if, "off"),
                                (rig.client, rig.paths[0].client_if, "on")):
            k = side.out(["ethtool", "-k", dev])
            assert f"tx-checksumming: {want}" in k and f"rx-checksumming: {want}" in k


SHAPED = 10e6   # bit/s; single-flow veth swings ~70 Mbit/s..4 Gbit/s on this 2-vCPU box,
                # so shape well below the worst case


def _shaped(qdisc):
    return Rig([PathSpec(), PathSpec(rate="10mbit", qdisc=qdisc)],
               client_subflow=False)  # single-path MPTCP on each path


@pytest.mark.parametrize("qdisc", ["tbf", "htb"])
def test_shaped_path_has_its_qdisc_and_delivers_intact(qdisc):
    with _shaped(qdisc) as rig:
        assert qdisc in rig.client.out(["tc", "qdisc", "show", "dev", rig.paths[1].client_if])
        assert qdisc in rig.server.out(["tc", "qdisc", "show", "dev", rig.paths[1].server_if])
        fast = rig.transfer(nbytes=4 << 20, path=0)
        slow = rig.transfer(nbytes=1 << 20, path=1)
        assert fast["intact"] and slow["intact"], (fast, slow)
        assert fast["bytes_received"] == 4 << 20 and slow["bytes_received"] == 1 << 20


@pytest.mark.live_timing(reason="shaped vs unshaped throughput over 1 s transfers")
@pytest.mark.parametrize("qdisc", ["tbf", "htb"])
def test_shaped_path_is_slower(qdisc, transfer_ledger):
    with _shaped(qdisc) as rig:
        fast = transfer_ledger.add(rig.transfer(duration=1, path=0))
        slow = transfer_ledger.add(rig.transfer(duration=1, path=1))
        moved = rig.paths[1].bytes()["server_rx"] * 8
    assert 0.5 * SHAPED < slow["throughput_bps"] < 1.3 * SHAPED, slow["throughput_bps"]
    assert fast["throughput_bps"] > 3 * slow["throughput_bps"], (fast, slow)
    # interface counters of the shaped path agree with the shaped rate
    assert moved < 1.5 * SHAPED * (slow["duration"] + 0.2), moved
