"""Per-stage counters survive a parameter change and restart when a chain changes."""
import json
import os
import subprocess
import sys
import uuid

EMPTCP = os.path.join(os.path.dirname(sys.executable), "emptcp")

POLICY = """
[hooks.in]
interface = "{iface}"
type = "xdp"

[[policy]]
name = "{name}"
hook = "in"
actions = [ {{ use = "count" }}, {{ use = "{last}"{params} }} ]
"""


def test_counters_across_applies(veth_ns, tmp_path):
    pin_root = f"/sys/fs/bpf/emptcp-test-{uuid.uuid4().hex[:10]}"
    ns = ["nsenter", f"--net=/var/run/netns/{veth_ns['b']}", "--"]

    def apply(name: str, last: str, params: str = "") -> None:
        cfg = tmp_path / f"{name}-{last}{params.count('0')}.toml"
        cfg.write_text(POLICY.format(iface=veth_ns["b_if"], name=name, last=last, params=params))
        subprocess.run(ns + [EMPTCP, "apply", str(cfg), "--pin-root", pin_root], check=True,
                       capture_output=True)

    def ping(n: int) -> None:
        subprocess.run(["ip", "netns", "exec", veth_ns["a"], "ping", "-c", str(n), "-i", "0.05",
                        veth_ns["b_addr"]], check=True, capture_output=True)

    def counted() -> list[int]:
        st = json.loads(subprocess.run(ns + [EMPTCP, "status", "--json", "--pin-root", pin_root],
                                       check=True, capture_output=True, text=True).stdout)
        return [a["counters"]["packets"] for a in st["hooks"][0]["policies"][0]["actions"]]

    for side in ("a", "b"):  # no IPv6 neighbour discovery chatter in the counts
        subprocess.run(["ip", "netns", "exec", veth_ns[side], "sysctl", "-qw",
                        "net.ipv6.conf.all.disable_ipv6=1"], check=True)
    try:
        apply("p", "set_recv_win", ", window = 1000")
        ping(4)
        first = counted()
        assert first[0] >= 4 and first[0] == first[1]
        apply("p", "set_recv_win", ", window = 2000")      # parameters only: keeps counting
        assert counted()[0] >= first[0]
        ping(2)
        assert counted()[0] >= first[0] + 2
        before = counted()[0]
        apply("p", "pass")                                 # another chain: starts from zero
        assert counted()[0] < 3 <= before                  # (stray ND/ARP may add one or two)
        ping(4)
        assert counted()[0] >= 4
        apply("q", "pass")                                 # another policy: starts from zero
        assert counted()[0] < 3
    finally:
        subprocess.run(ns + [EMPTCP, "detach", "--all", "--pin-root", pin_root],
                       capture_output=True)
