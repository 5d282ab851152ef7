"""Boot one kernel with virtme-ng under TCG and run the guest runner in it.

The guest sees the host's files read-only (9p; /tmp, /etc, /var... are throw-away
overlays), so it runs the checkout's own ``.venv`` and sends its results back as
result lines on stdout; everything else goes to a log file.
"""
from __future__ import annotations

import os
import shlex
import shutil
import signal
import subprocess
import threading
import time
from dataclasses import dataclass, field
from typing import Callable, TextIO

from .results import CheckResult, parse_line, to_result

#: host tools the harness needs, and the Debian/pip package that brings each
PREREQS = {"qemu-system-x86_64": "apt-get install qemu-system-x86",
           "busybox": "apt-get install busybox-static",
           "depmod": "apt-get install kmod",
           "vng": ".venv/bin/pip install virtme-ng"}
#: without udev in the guest, virtme-ng finds no /dev/virtio-ports and the script's
#: output only reaches the console (no separate stdout, no exit code)
UDEVD = ("/usr/lib/systemd/systemd-udevd", "/lib/systemd/systemd-udevd")


@dataclass
class Boot:
    """What one guest run produced."""
    kernel: str
    release: str = ""
    results: list[CheckResult] = field(default_factory=list)
    boot_seconds: float | None = None    # until the guest runner said "start"
    seconds: float = 0.0
    done: bool = False                   # the guest runner reached its end
    exit_code: int | None = None
    error: str = ""                      # why the guest did not finish, if it did not


def missing_prereqs(venv_bin: str) -> list[str]:
    """Install hints for every missing host prerequisite (empty when all are there)."""
    out = []
    for tool, hint in PREREQS.items():
        if shutil.which(tool, path=venv_bin + os.pathsep + os.environ.get("PATH", "")) is None:
            out.append(f"{tool} (install: {hint})")
    if not any(os.path.exists(p) for p in UDEVD):
        out.append("systemd-udevd (install: apt-get install udev; virtme-ng needs it for the "
                   "guest's stdout/stderr ports)")
    return out


def build_objects(repo: str) -> str:
    """Build tests/datapath's BPF objects on the host, as the package builds them
    (emptcp.build.compile: same clang, flags and headers; the objects do not depend on the
    running kernel, and clang under TCG takes minutes). Returns the directory, which the
    guest sees read-only."""
    from emptcp.build.compile import BuildError, build_core_data
    out = os.path.join(repo, "build", "kernels")
    try:
        build_core_data(repo, out)
    except BuildError as e:
        raise RuntimeError(f"building the BPF objects into {out} failed: {e}") from None
    return os.path.join(out, "bpf")


def guest_script(repo: str, checks: list[str], objdir: str = "") -> str:
    """The shell command the guest runs: bpffs, then the guest runner with the repo's venv."""
    py = os.path.join(repo, ".venv", "bin", "python")
    args = " ".join(f"--check {shlex.quote(c)}" for c in checks)
    obj = f"EMPTCP_TEST_BPF_OBJDIR={shlex.quote(objdir)} " if objdir else ""
    return ("mountpoint -q /sys/fs/bpf || mount -t bpf bpf /sys/fs/bpf; "
            f"cd {shlex.quote(repo)} && exec env CI=true PYTHONDONTWRITEBYTECODE=1 "
            f"PYTHONUNBUFFERED=1 {obj}{shlex.quote(py)} -m tests.kernels.guest {args}")


def vng_command(vmlinuz: str, repo: str, checks: list[str], cpus: int, memory: str,
                objdir: str = "") -> list[str]:
    return ["vng", "--run", vmlinuz, "--disable-kvm", "--memory", memory, "--cpus", str(cpus),
            "--cwd", repo, "--exec", guest_script(repo, checks, objdir)]


def run(kernel: str, vmlinuz: str, repo: str, checks: list[str], log: TextIO, *,
        timeout: float, cpus: int = 2, memory: str = "2G", objdir: str = "",
        on_event: Callable[[str, Boot], None] = lambda what, b: None) -> Boot:
    """Boot ``vmlinuz``, run ``checks`` in it, stream results; at most ``timeout`` seconds."""
    venv_bin = os.path.join(repo, ".venv", "bin")
    env = dict(os.environ, PATH=venv_bin + os.pathsep + os.environ.get("PATH", ""))
    cmd = vng_command(vmlinuz, repo, checks, cpus, memory, objdir)
    log.write(f"$ {shlex.join(cmd)}\n")
    log.flush()
    b = Boot(kernel)
    t0 = time.monotonic()
    # stderr through a pipe too, never the log file itself: qemu reopens /proc/self/fd/2
    # for the guest's stderr port (truncating a file, writing at its own offset)
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            stdin=subprocess.DEVNULL, text=True, errors="replace", env=env,
                            cwd=repo, start_new_session=True)
    lock = threading.Lock()

    def write(text: str) -> None:
        with lock:
            log.write(text)
            log.flush()

    def copy_stderr() -> None:
        assert proc.stderr is not None
        for line in proc.stderr:
            write(line)
    copier = threading.Thread(target=copy_stderr, daemon=True)
    copier.start()
    expired = threading.Event()

    def kill() -> None:
        expired.set()
        try:
            os.killpg(proc.pid, signal.SIGKILL)   # vng, virtme-run and their qemu
        except ProcessLookupError:
            pass
    timer = threading.Timer(timeout, kill)
    timer.start()
    try:
        assert proc.stdout is not None
        for line in proc.stdout:
            write(line)
            try:
                ev = parse_line(line)
            except ValueError as e:
                write(f"[harness] {e}\n")
                b.error = str(e)
                continue
            if ev is None:
                continue
            if ev["event"] == "start":
                b.release = str(ev.get("release", ""))
                b.boot_seconds = round(time.monotonic() - t0, 1)
                on_event("start", b)
            elif ev["event"] == "result":
                b.results.append(to_result(kernel, ev))
                on_event("result", b)
            else:
                b.done = True
        b.exit_code = proc.wait()
        copier.join(timeout=10)
    finally:
        timer.cancel()
        if proc.poll() is None:
            kill()
            proc.wait()
    b.seconds = round(time.monotonic() - t0, 1)
    if expired.is_set():
        b.error = f"timed out after {timeout:.0f} s (guest killed)"
    elif b.boot_seconds is None:
        b.error = f"the guest runner never started (vng exit {b.exit_code}; boot failed?)"
    elif not b.done and not b.error:
        b.error = f"the guest runner ended early (vng exit {b.exit_code})"
    log.flush()
    return b
