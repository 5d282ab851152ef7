"""Attachments on a veth inside network namespaces, with real traffic."""
import os
import subprocess

from emptcp import Link, ObjectSpec, TcHook, attach_tcx, attach_xdp, xdp_query
from emptcp.netns import enter


def ping(ns: str, addr: str, count: int = 3) -> None:
    subprocess.run(["ip", "netns", "exec", ns, "ping", "-c", str(count), "-i", "0.05", "-W", "1",
                    addr], check=True, capture_output=True)


def bpftool_net(ns: str) -> str:
    return subprocess.run(["nsenter", f"--net=/var/run/netns/{ns}", "bpftool", "net"],
                          capture_output=True, text=True, check=True).stdout


def test_xdp_pinned_link_counts_traffic_and_detaches_clean(objs, veth_ns, pin_dir):
    ns = veth_ns
    with ObjectSpec(objs["basics"]).load() as o:
        counters = o.map("counters", int, int)
        prog_id = o.programs["xdp_count"].id
        with enter(ns["b"]):
            link = attach_xdp(o.programs["xdp_count"], ns["b_if"], mode="native")
            assert xdp_query(ns["b_if"]) == prog_id
        link.pin(f"{pin_dir}/xdp_link")
        link.close()                                 # the pin keeps it attached
    # the object is closed: only the pinned link keeps the program alive
    ping(ns["a"], ns["b_addr"])
    from emptcp import Map, Program
    link = Link.from_pin(f"{pin_dir}/xdp_link")
    assert link.info.prog_id == prog_id and link.info.type_name == "xdp"
    with Program.from_id(prog_id) as p:
        assert p.name == "xdp_count"
    assert f"id {prog_id}" in bpftool_net(ns["b"])
    os.unlink(f"{pin_dir}/xdp_link")
    link.close()                                     # last reference: detached
    with enter(ns["b"]):
        assert xdp_query(ns["b_if"]) == 0
    assert "xdp_count" not in bpftool_net(ns["b"])


def test_xdp_counter_moves_with_pings(objs, veth_ns):
    ns = veth_ns
    with ObjectSpec(objs["basics"]).load() as o:
        counters = o.map("counters", int, int)
        with enter(ns["b"]):
            link = attach_xdp(o.programs["xdp_count"], ns["b_if"])
        ping(ns["a"], ns["b_addr"], count=5)
        assert counters[0] >= 5                      # echo requests (and ARP) seen
        link.detach()
        link.close()
        before = counters[0]
        ping(ns["a"], ns["b_addr"], count=2)
        assert counters[0] == before


def test_tc_clsact_ingress_and_egress(objs, veth_ns):
    ns = veth_ns
    with ObjectSpec(objs["basics"]).load() as o:
        counters = o.map("counters", int, int)
        with enter(ns["b"]):
            ingress = TcHook(ns["b_if"], "ingress").create()
            egress = TcHook(ns["b_if"], "egress").create()
            assert ingress.created
            fi = ingress.attach(o.programs["tc_count_ingress"])
            fe = egress.attach(o.programs["tc_count_egress"])
            assert fi.prog_id == o.programs["tc_count_ingress"].id
            assert egress.query().prog_id == o.programs["tc_count_egress"].id
        ping(ns["a"], ns["b_addr"], count=4)
        assert counters[4] >= 4 and counters[5] >= 4
        with enter(ns["b"]):
            ingress.detach()
            egress.detach()
            assert ingress.query() is None
            ingress.destroy()
        out = subprocess.run(["ip", "-n", ns["b"], "qdisc", "show", "dev", ns["b_if"]],
                             capture_output=True, text=True).stdout
        assert "clsact" not in out


def test_tcx_links(objs, veth_ns):
    ns = veth_ns
    with ObjectSpec(objs["basics"]).load() as o:
        counters = o.map("counters", int, int)
        with enter(ns["b"]):
            li = attach_tcx(o.programs["tc_count_ingress"], ns["b_if"], "ingress")
            le = attach_tcx(o.programs["tc_count_egress"], ns["b_if"], "egress")
        assert li.info.type_name == "tcx"
        ping(ns["a"], ns["b_addr"], count=3)
        assert counters[4] >= 3 and counters[5] >= 3
        li.close()
        le.close()
        assert "tc_count" not in bpftool_net(ns["b"])
