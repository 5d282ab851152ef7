"""CLI usability: help, usage errors, empty status, plan, detach of an empty root."""
from __future__ import annotations

import json
import os
import subprocess

import pytest

from .conftest import EXAMPLES, Host, emptcp_bin, new_pin_root, remove_pin_root


def run(*args: str, env_root: str | None = None) -> subprocess.CompletedProcess:
    env = dict(os.environ)
    if env_root:
        env["EMPTCP_PIN_ROOT"] = env_root
    return subprocess.run([emptcp_bin(), *args], capture_output=True, text=True, timeout=60,
                          env=env)


@pytest.mark.parametrize("args", [["--help"], ["apply", "--help"], ["status", "--help"],
                                  ["detach", "--help"], ["plan", "--help"], ["--version"]])
def test_help_exits_0(args):
    p = run(*args)
    assert p.returncode == 0, p.stderr
    assert p.stdout.strip()


def test_apply_help_mentions_transactional():
    out = run("apply", "--help").stdout
    assert "--pin-root" in out and "--dry-run" in out and "transaction" in out


def test_no_args_exits_2():
    p = run()
    assert p.returncode == 2
    assert "usage" in (p.stdout + p.stderr).lower()


@pytest.mark.parametrize("args", [["frobnicate"], ["apply"], ["status", "--bogus"]])
def test_usage_errors_exit_2(args):
    p = run(*args)
    assert p.returncode == 2, (p.returncode, p.stderr)
    assert "Traceback" not in p.stderr


def test_status_on_empty_pin_root(root):
    pin = new_pin_root()
    try:
        p = run("status", "--json", "--pin-root", pin)
        assert p.returncode == 0, p.stderr
        st = json.loads(p.stdout)
        assert st["applied"] is False and st["hooks"] == [] and st["pin_root"] == pin
        p = run("status", env_root=pin)  # EMPTCP_PIN_ROOT works too
        assert p.returncode == 0 and "nothing applied" in p.stdout
        p = run("detach", "--all", "--pin-root", pin)
        assert p.returncode == 0, p.stderr
        assert not os.path.exists(pin), "status/detach created the pin root"
    finally:
        remove_pin_root(pin)


def test_missing_file_exits_2(root):
    pin = new_pin_root()
    try:
        p = run("apply", "/nonexistent/policy.toml", "--pin-root", pin)
        assert p.returncode == 2 and "/nonexistent/policy.toml" in p.stderr
        assert len(p.stderr.strip().splitlines()) == 1
        assert not os.path.exists(pin)
    finally:
        remove_pin_root(pin)


def test_detach_without_target_exits_2(root):
    p = run("detach", "--pin-root", new_pin_root())
    assert p.returncode == 2 and "--all" in p.stderr


@pytest.mark.slow
def test_plan_touches_nothing_then_detach_interface(host: Host) -> None:
    path = os.path.join(EXAMPLES, "two-hooks.toml")
    p = host.ok("plan", path)
    assert "+ hook wan" in p.stdout and "preflight" in p.stdout
    assert not os.path.exists(host.pin_root) or host.tree() == []
    assert host.attachments()["xdp"] == []
    host.apply(path)
    gen = host.status()["generation"]
    assert "no changes" in host.ok("plan", path).stdout
    # detaching one interface is a new generation without its hooks
    host.ok("detach", "veth1")
    st = host.status()
    assert st["generation"] == gen + 1
    assert sorted(h["name"] for h in st["hooks"]) == ["wan", "wan-out"]
    assert host.tc_attachments() == {"veth0/tc-egress": 1}     # TCX link or cls_bpf filter
    host.detach_all()
    host.assert_clean()


def test_pin_root_not_on_bpffs_is_named(tmp_path):
    """A pin root outside bpffs is refused with the reason and the fix, not EPERM."""
    pin = str(tmp_path / "pins")
    for args in (["status", "--pin-root", pin], ["detach", "--all", "--pin-root", pin]):
        p = run(*args)
        assert p.returncode == 1, (args, p.returncode, p.stderr)
        assert "not on a BPF filesystem" in p.stderr and "mount -t bpf" in p.stderr, p.stderr
        assert "Traceback" not in p.stderr
    assert not os.path.exists(pin)


def test_ip_netns_exec_is_explained(root):
    """`ip netns exec` remounts /sys: the host's bpffs and pins are hidden there; say so
    and name the way that works (nsenter --net)."""
    ns = f"et-nsexec-{os.getpid()}"
    subprocess.run(["ip", "netns", "add", ns], check=True)
    try:
        p = subprocess.run(["ip", "netns", "exec", ns, emptcp_bin(), "status"],
                           capture_output=True, text=True, timeout=60)
        assert p.returncode == 1, (p.returncode, p.stdout, p.stderr)
        assert "ip netns exec" in p.stderr and "nsenter --net=" in p.stderr, p.stderr
    finally:
        subprocess.run(["ip", "netns", "del", ns], check=False)


def test_lock_leaves_no_file_and_pin_root_is_private(root):
    """Commands lock the pin root directory itself: no lock files pile up in /run/lock,
    and the pin root is created 0700."""
    import glob
    import stat
    before = set(glob.glob("/run/lock/emptcp-*"))
    pin = new_pin_root()
    try:
        from emptcp.runtime.pinroot import PinRoot, locked
        with locked(PinRoot(pin)):
            assert stat.S_IMODE(os.stat(pin).st_mode) == 0o700
        assert set(glob.glob("/run/lock/emptcp-*")) == before
    finally:
        remove_pin_root(pin)
