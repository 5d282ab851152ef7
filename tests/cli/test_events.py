"""`emptcp events`: data-path events reach the CLI, decoded, as JSON lines."""
import json
import os
import subprocess
import sys
import uuid

from emptcp.rig import Rig

from ..conftest import require
from ..kernel import wait_for

EMPTCP = os.path.join(os.path.dirname(sys.executable), "emptcp")

POLICY = """
[hooks.out]
interface = "{iface}"
type = "tc-egress"

[[policy]]
name = "record-mptcp"
hook = "out"
selectors = [ {{ use = "mptcp_subtype", subtype = 0 }} ]
actions = [ {{ use = "record", subtype = 0 }} ]
"""


def _maps_bpf_map(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/maps") as f:
            return "anon_inode:bpf-map" in f.read()
    except OSError:
        return False


def test_events_stream_json_lines(root, tmp_path):
    from emptcp.plugins.manager import PluginManager
    require("record" in PluginManager().stages(), "emptcp-mptcp plugin (record) not installed")
    pin_root = f"/sys/fs/bpf/emptcp-test-{uuid.uuid4().hex[:10]}"
    with Rig(1) as rig:
        cfg = tmp_path / "record.toml"
        cfg.write_text(POLICY.format(iface=rig.paths[0].client_if))
        ns = ["nsenter", f"--net=/var/run/netns/{rig.client.ns}", "--"]
        try:
            subprocess.run(ns + [EMPTCP, "apply", str(cfg), "--pin-root", pin_root], check=True,
                           capture_output=True, text=True)
            events = subprocess.Popen(ns + [EMPTCP, "events", "--json", "--count", "3",
                                            "--timeout", "20", "--pin-root", pin_root],
                                      stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
            # traffic starts once the consumer has mapped the ring buffer (libbpf mmaps
            # the map: /proc/PID/maps shows it; nsenter execs emptcp in place)
            wait_for(lambda: _maps_bpf_map(events.pid) or events.poll() is not None, 20,
                     "emptcp events maps the ring buffer")
            assert events.poll() is None, events.communicate()
            rep = rig.transfer(nbytes=1 << 16)
            assert rep["intact"]
            out, err = events.communicate(timeout=30)
            assert events.returncode == 0, err
            lines = [json.loads(line) for line in out.splitlines()]
            # MP_CAPABLE rides on the SYN, the ACK and the first data packet; --count stops at 3
            assert len(lines) == 3, out
            for ev in lines:
                assert ev["type"] == "mptcp_opt" and ev["subtype"] == "MP_CAPABLE"
                assert ev["hook"] == "out" and ev["kind"] == "tc-egress"
                assert ev["policy_name"] == "record-mptcp"
                assert ev["saddr"] == rig.paths[0].client_addr and ev["dport"] == rep["port"] \
                    if "port" in rep else ev["saddr"] == rig.paths[0].client_addr
                assert ev["daddr"] == rig.paths[0].server_addr
                assert ev["option"].startswith("1e")   # kind 30, as sent
            assert len({ev["sport"] for ev in lines}) == 1  # one connection
        finally:
            subprocess.run(ns + [EMPTCP, "detach", "--all", "--pin-root", pin_root],
                           capture_output=True)
    assert not os.path.exists(pin_root)
