"""Fixtures for the CLI / API tests: two namespaces joined by two veth pairs
(an :class:`emptcp.rig.Rig`, with the interface names the examples use), a private
pin root per test, and helpers that run the installed ``emptcp`` command inside
namespace A with ``nsenter --net=`` (which, unlike ``ip netns exec``, does not
remount /sys, so the root bpffs stays visible).

Topology (the interface names the examples/*.toml files use)::

    namespace A (where emptcp runs)          namespace B (the peer)
    veth0  10.77.0.1/24   <--------------->  peer0  10.77.0.2/24
    veth1  10.77.1.1/24   <--------------->  peer1  10.77.1.2/24

Checksum offloads stay on (veth defaults), as the examples' counters expect: with
``tx off`` a GSO skb that TC egress counts once would leave as several segments.
"""
from __future__ import annotations

import ctypes
import json
import os
import shutil
import socket
import subprocess
import sys
import threading
import time
import uuid
from typing import Any

import pytest

from ..conftest import require

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.dirname(os.path.dirname(HERE))
EXAMPLES = os.path.join(REPO, "examples")
#: names of what these tests create: pin roots /sys/fs/bpf/<prefix>-test-*, namespaces
#: <prefix>-cli-* (EMPTCP_TEST_PREFIX: keep runs of several people on one machine apart)
TEST_PREFIX = os.environ.get("EMPTCP_TEST_PREFIX", "").strip() or "emptcp"


def emptcp_bin() -> str:
    cand = os.path.join(os.path.dirname(sys.executable), "emptcp")
    if os.path.exists(cand):
        return cand
    found = shutil.which("emptcp")
    require(found is not None, "the emptcp command is not installed (pip install .)")
    return found  # type: ignore[return-value]


A_ADDR0, A_ADDR1, B_ADDR0, B_ADDR1 = "10.77.0.1", "10.77.1.1", "10.77.0.2", "10.77.1.2"


def sh(*cmd: str, check: bool = True, timeout: float = 30) -> subprocess.CompletedProcess:
    p = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout)
    if check and p.returncode != 0:
        raise AssertionError(f"{' '.join(cmd)} failed ({p.returncode}): {p.stderr}")
    return p


def nsrun(ns: str, *cmd: str, check: bool = True, timeout: float = 30,
          env: dict[str, str] | None = None) -> subprocess.CompletedProcess:
    p = subprocess.run(["nsenter", f"--net=/var/run/netns/{ns}", "--", *cmd],
                       capture_output=True, text=True, timeout=timeout, env=env)
    if check and p.returncode != 0:
        raise AssertionError(f"[{ns}] {' '.join(cmd)} failed ({p.returncode}):\n"
                             f"{p.stdout}\n{p.stderr}")
    return p


# ---- TC attachments, as the kernel sees them ------------------------------------
# emptcp attaches a TC hook as a TCX link (kernels >= 6.6) or, without TCX (or with
# EMPTCP_TC_ATTACH=cls_bpf), as a direct-action cls_bpf filter on the clsact qdisc
# (emptcp.runtime.tcattach). The tests count both, from the kernel: TCX programs with
# bpf_prog_query (bpftool 7.1 does not list TCX), cls_bpf filters from `bpftool net`.
# libbpf's bpf_prog_query() wraps the bpf(2) syscall on every architecture; the
# attach types are UAPI enum values (enum bpf_attach_type), not per-arch numbers.
_ATTACH = {"xdp": None, "tc-ingress": 46, "tc-egress": 47}  # BPF_TCX_INGRESS/EGRESS
TC_TYPES = ("tc-ingress", "tc-egress")
_libbpf = None


def _bpf_prog_query():
    global _libbpf
    if _libbpf is None:
        import ctypes.util
        _libbpf = ctypes.CDLL(ctypes.util.find_library("bpf") or "libbpf.so.1", use_errno=True)
        u32p = ctypes.POINTER(ctypes.c_uint32)
        _libbpf.bpf_prog_query.argtypes = [ctypes.c_int, ctypes.c_int, ctypes.c_uint32,
                                           u32p, u32p, u32p]
        _libbpf.bpf_prog_query.restype = ctypes.c_int
    return _libbpf.bpf_prog_query


def tcx_prog_count(ifindex: int, direction: str) -> int:
    """Programs attached by TCX to ``ifindex`` (current thread's netns) in ``direction``;
    0 on a kernel without TCX (before 6.6 the attach type does not exist)."""
    from emptcp.runtime.tcattach import tcx_supported
    if not tcx_supported():
        return 0
    flags, count = ctypes.c_uint32(0), ctypes.c_uint32(0)
    rc = _bpf_prog_query()(ifindex, _ATTACH[direction], 0, ctypes.byref(flags), None,
                           ctypes.byref(count))
    if rc != 0:
        err = -rc if rc < 0 else ctypes.get_errno()
        if err == 2:  # ENOENT: no TCX entry on this device at all
            return 0
        raise OSError(err, f"bpf_prog_query: {os.strerror(err)}")
    return count.value


def cls_bpf_filters(bpftool_net: dict[str, Any]) -> dict[str, list[dict[str, Any]]]:
    """``{"dev/tc-ingress": [filter, ...]}``: the cls_bpf filters on clsact qdiscs in one
    namespace's ``bpftool -j net`` (kind ``clsact/ingress`` | ``clsact/egress``; other
    kinds -- a newer bpftool's ``tcx/...`` rows -- are not cls_bpf filters)."""
    out: dict[str, list[dict[str, Any]]] = {}
    for f in bpftool_net.get("tc", []):
        qdisc, _, direction = str(f.get("kind", "")).partition("/")
        if qdisc == "clsact" and direction in ("ingress", "egress"):
            out.setdefault(f"{f['devname']}/tc-{direction}", []).append(f)
    return out


def tc_mode() -> str:
    """How emptcp attaches TC hooks in this run ("tcx" or "cls_bpf"): the environment's
    EMPTCP_TC_ATTACH, else the kernel's probe -- what the CLI under test will do."""
    from emptcp.runtime.tcattach import mechanism
    return mechanism()


class Host:
    """Namespace A with a private pin root: run the CLI, read state."""

    def __init__(self, ns: str, peer: str, pin_root: str) -> None:
        self.ns, self.peer, self.pin_root = ns, peer, pin_root
        self.bin = emptcp_bin()

    # ---- the CLI --------------------------------------------------------
    def argv(self, *args: str) -> list[str]:
        return ["nsenter", f"--net=/var/run/netns/{self.ns}", "--", self.bin, *args,
                "--pin-root", self.pin_root]

    def cli(self, *args: str, timeout: float = 60, env: dict[str, str] | None = None
            ) -> subprocess.CompletedProcess:
        return subprocess.run(self.argv(*args), capture_output=True, text=True,
                              timeout=timeout, env=env)

    def ok(self, *args: str) -> subprocess.CompletedProcess:
        p = self.cli(*args)
        assert p.returncode == 0, f"emptcp {' '.join(args)} -> {p.returncode}\n{p.stdout}\n{p.stderr}"
        return p

    def apply(self, path: str) -> subprocess.CompletedProcess:
        return self.ok("apply", path)

    def status(self) -> dict[str, Any]:
        return json.loads(self.ok("status", "--json").stdout)

    def detach_all(self) -> None:
        self.ok("detach", "--all")

    # ---- state ----------------------------------------------------------
    def tree(self) -> list[str]:
        """Every path under the pin root (relative), sorted."""
        out = []
        for dirpath, dirs, files in os.walk(self.pin_root):
            rel = os.path.relpath(dirpath, self.pin_root)
            out += [os.path.normpath(os.path.join(rel, n)) for n in dirs + files]
        return sorted(out)

    def ifindex(self, dev: str) -> int:
        from emptcp.netns import enter
        with enter(self.ns):
            return socket.if_nametoindex(dev)

    def attachments(self) -> dict[str, Any]:
        """What the kernel has attached in namespace A: ``xdp`` (``bpftool net`` rows),
        ``tc`` (``{"dev/tc-ingress": n}``: TCX programs + cls_bpf filters per hook, only
        hooks with any) and ``tc_modes`` (the same, split by mechanism:
        ``{"dev/tc-ingress": {"tcx": n, "cls_bpf": m}}``)."""
        from emptcp.netns import enter
        net = json.loads(nsrun(self.ns, "bpftool", "-j", "net").stdout)[0]
        cls = cls_bpf_filters(net)
        tc: dict[str, int] = {}
        modes: dict[str, dict[str, int]] = {}
        with enter(self.ns):
            for dev in ("veth0", "veth1"):
                idx = socket.if_nametoindex(dev)
                for d in TC_TYPES:
                    key = f"{dev}/{d}"
                    n_tcx, n_cls = tcx_prog_count(idx, d), len(cls.pop(key, []))
                    if n_tcx or n_cls:
                        tc[key] = n_tcx + n_cls
                        modes[key] = {"tcx": n_tcx, "cls_bpf": n_cls}
        assert not cls, f"cls_bpf filters on interfaces the rig does not have: {cls}"
        return {"xdp": net.get("xdp", []), "tc": tc, "tc_modes": modes}

    def tc_attachments(self, att: dict[str, Any] | None = None) -> dict[str, int]:
        """``{"dev/tc-ingress": n}``: the TC attachments in A per hook, asserting that
        every one was made the way this run attaches (all TCX links, or all cls_bpf
        filters: see :func:`tc_mode`)."""
        att = att or self.attachments()
        mode = tc_mode()
        wrong = {k: m for k, m in att["tc_modes"].items()
                 if any(n for kind, n in m.items() if kind != mode)}
        assert not wrong, f"TC attachments not all made as {mode}: {wrong}"
        return att["tc"]

    def owned_prog_ids(self) -> set[int]:
        """Ids of the programs this pin root runs: entries (links) and tail-call stages."""
        ids = set()
        st = self.status()
        for h in st.get("hooks", []):
            if h.get("attached"):
                ids.add(h["attached"]["prog_id"])
        for pa in ("emptcp_xdp_progs", "emptcp_tc_progs"):
            path = os.path.join(self.pin_root, "maps", pa)
            if os.path.exists(path):
                dump = json.loads(sh("bpftool", "-j", "map", "dump", "pinned", path).stdout)
                ids |= {e["formatted"]["value"] for e in dump if "formatted" in e}
        return ids

    def assert_clean(self, prog_ids: set[int] = frozenset(), timeout: float = 5) -> None:
        """Nothing under the pin root, nothing attached in A, the given programs freed."""
        assert not os.path.exists(self.pin_root) or self.tree() == [], self.tree()
        att = self.attachments()
        assert att == {"xdp": [], "tc": {}, "tc_modes": {}}, att
        deadline = time.monotonic() + timeout
        alive = set(prog_ids)
        while alive and time.monotonic() < deadline:  # programs are freed after an RCU grace
            alive = {i for i in alive
                     if sh("bpftool", "prog", "show", "id", str(i), check=False).returncode == 0}
            if alive:
                time.sleep(0.1)
        names = {}
        for i in alive:
            names[i] = sh("bpftool", "prog", "show", "id", str(i), check=False).stdout.strip()
        assert not alive, f"programs still loaded after detach: {names}"


def _rename(side, dev: str, name: str) -> None:
    side.run(["ip", "link", "set", "dev", dev, "down"])
    side.run(["ip", "link", "set", "dev", dev, "name", name])
    side.run(["ip", "link", "set", "dev", name, "up"])


def new_pin_root() -> str:
    return f"/sys/fs/bpf/{TEST_PREFIX}-test-{uuid.uuid4().hex[:10]}"


def remove_pin_root(path: str) -> None:
    shutil.rmtree(path, ignore_errors=True)


@pytest.fixture
def host(root):
    """Namespaces A and B (two veth pairs, see the module doc) and a private pin root;
    all removed afterwards."""
    from emptcp.rig import PathSpec, Rig
    pin_root = new_pin_root()
    binary = emptcp_bin()
    rig = Rig(paths=[PathSpec(offload=True), PathSpec(offload=True)], prefix=f"{TEST_PREFIX}-cli",
              base=77, limits=None, client_subflow=False)
    try:
        with rig:
            for p in rig.paths:  # the names the examples use
                _rename(rig.client, p.client_if, f"veth{p.index}")
                _rename(rig.server, p.server_if, f"peer{p.index}")
                p.client_if, p.server_if = f"veth{p.index}", f"peer{p.index}"
            rig.wait_ready()
            h = Host(rig.client.ns, rig.server.ns, pin_root)
            h.rig = rig
            yield h
            if os.path.exists(pin_root):  # detach inside A, before the rig goes away
                subprocess.run(["nsenter", f"--net=/var/run/netns/{rig.client.ns}", "--", binary,
                                "detach", "--all", "--pin-root", pin_root],
                               capture_output=True, timeout=60)
    finally:
        remove_pin_root(pin_root)  # removing the pins detaches anyway


# ---- traffic -----------------------------------------------------------------
def ping(src_ns: str, dst: str, count: int = 3) -> None:
    nsrun(src_ns, "ping", "-c", str(count), "-i", "0.05", "-W", "1", "-q", dst, timeout=20)


def tcp_exchange(server_ns: str, client_ns: str, addr: str, port: int, payload: int = 20000,
                 timeout: float = 3.0) -> bool:
    """One TCP connection client -> server:port; the client sends ``payload`` bytes and the
    server echoes them. True when all bytes came back, False when the connect timed out."""
    from emptcp.netns import enter
    with enter(server_ns):
        srv = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        srv.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        srv.bind((addr, port))
        srv.listen(1)
    with enter(client_ns):
        cli = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    srv.settimeout(timeout)
    cli.settimeout(timeout)

    def serve() -> None:
        try:
            conn, _ = srv.accept()
        except OSError:
            return
        with conn:
            conn.settimeout(timeout)
            got = 0
            try:
                while got < payload:
                    data = conn.recv(65536)
                    if not data:
                        break
                    got += len(data)
                    conn.sendall(data)
            except OSError:
                pass
    t = threading.Thread(target=serve, daemon=True)
    t.start()
    try:
        try:
            cli.connect((addr, port))
        except (socket.timeout, OSError):
            return False
        cli.sendall(b"x" * payload)
        back = 0
        while back < payload:
            data = cli.recv(65536)
            if not data:
                break
            back += len(data)
        return back == payload
    finally:
        cli.close()
        srv.close()
        t.join(timeout + 1)
