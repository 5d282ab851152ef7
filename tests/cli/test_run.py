"""`emptcp run`: applies, stays in the foreground, and on SIGTERM/SIGINT keeps or
removes the configuration as asked."""
import json
import os
import signal
import subprocess
import sys
import uuid

import pytest

EMPTCP = os.path.join(os.path.dirname(sys.executable), "emptcp")

POLICY = """
[hooks.in]
interface = "{iface}"
type = "xdp"

[[policy]]
name = "count-all"
hook = "in"
actions = [ {{ use = "count" }} ]
"""


@pytest.mark.parametrize("on_exit,sig", [("detach", signal.SIGTERM), ("keep", signal.SIGINT)])
def test_run_applies_and_honours_on_exit(veth_ns, tmp_path, on_exit, sig):
    pin_root = f"/sys/fs/bpf/emptcp-test-{uuid.uuid4().hex[:10]}"
    cfg = tmp_path / "count.toml"
    cfg.write_text(POLICY.format(iface=veth_ns["b_if"]))
    ns = ["nsenter", f"--net=/var/run/netns/{veth_ns['b']}", "--"]
    proc = subprocess.Popen(ns + [EMPTCP, "run", str(cfg), "--on-exit", on_exit,
                                  "--pin-root", pin_root],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        assert "applied generation 0" in proc.stdout.readline()
        subprocess.run(["ip", "netns", "exec", veth_ns["a"], "ping", "-c", "2", "-i", "0.1",
                        veth_ns["b_addr"]], check=True, capture_output=True)
        st = json.loads(subprocess.run(ns + [EMPTCP, "status", "--json", "--pin-root", pin_root],
                                       check=True, capture_output=True, text=True).stdout)
        assert st["applied"] and st["hooks"][0]["policies"][0]["actions"][0]["counters"][
            "packets"] >= 2
        proc.send_signal(sig)   # "applied" is printed once the handlers are installed
        out, err = proc.communicate(timeout=20)
        assert proc.returncode == 0, err
        if on_exit == "detach":
            assert "detached" in out and not os.path.exists(pin_root)
        else:
            assert "configuration kept" in out
            st = json.loads(subprocess.run(ns + [EMPTCP, "status", "--json", "--pin-root",
                                                 pin_root], check=True, capture_output=True,
                                           text=True).stdout)
            assert st["applied"] and st["hooks"][0]["attached"]
    finally:
        if proc.poll() is None:
            proc.kill()
        subprocess.run(ns + [EMPTCP, "detach", "--all", "--pin-root", pin_root],
                       capture_output=True)
    assert not os.path.exists(pin_root)
