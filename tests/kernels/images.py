"""The kernels of the matrix and their images: Debian packages fetched with
``apt-get download`` and unpacked with ``dpkg -x`` into a cache (never installed
into the host's /boot). Idempotent: an unpacked kernel is reused.

Cache layout (``$EMPTCP_KERNEL_CACHE``, default /var/lib/emptcp-kernels)::

    <package>/boot/vmlinuz-<release>
    <package>/lib/modules/<release>/...   (+ modules.dep from depmod)
    <package>/.complete

virtme-ng finds the modules from the image path: it walks up from the vmlinuz
to the directory holding ``lib/modules`` and exports ``lib/modules/<release>``
to the guest (a symlink /lib/modules/<release> -> that host path, seen through the
guest's 9p root), so veth, sch_ingress, cls_bpf... load on demand there. The cache
must therefore be visible in the guest: not under /var/cache, /var/tmp or /var/log,
which virtme-ng-init covers with empty tmpfs mounts.
"""
from __future__ import annotations

import os
import shutil
import subprocess
from dataclasses import dataclass

CACHE = os.environ.get("EMPTCP_KERNEL_CACHE", "/var/lib/emptcp-kernels")
#: host paths virtme-ng-init hides under an empty tmpfs in the guest
GUEST_HIDDEN = ("/var/cache", "/var/tmp", "/var/log", "/var/lib/private", "/var/lib/apt")


@dataclass(frozen=True)
class Kernel:
    """A kernel of the matrix: ``name`` (what --kernel takes), its Debian package and
    the release (``uname -r``) the package ships."""
    name: str
    package: str
    release: str

    @property
    def root(self) -> str:
        return os.path.join(CACHE, self.package)

    @property
    def vmlinuz(self) -> str:
        return os.path.join(self.root, "boot", f"vmlinuz-{self.release}")


# Non-cloud flavours: they have 9p, which virtme-ng falls back to here.
KERNELS: tuple[Kernel, ...] = (
    Kernel("6.1", "linux-image-6.1.0-47-amd64", "6.1.0-47-amd64"),                 # Debian 12
    Kernel("6.12", "linux-image-6.12.107+deb12-amd64-unsigned", "6.12.107+deb12-amd64"),
)
BY_NAME = {k.name: k for k in KERNELS}


class ImageError(RuntimeError):
    """A kernel image could not be fetched or unpacked; the message says which step."""


def host_series() -> str:
    """``6.18`` for a host running 6.18.x."""
    return ".".join(os.uname().release.split(".")[:2])


def default_kernels() -> list[Kernel]:
    """Every kernel of the matrix except the host's own series (the host runs the full suite)."""
    return [k for k in KERNELS if k.name != host_series()]


def select(names: list[str] | None) -> list[Kernel]:
    """The named kernels (in matrix order), or the default; unknown names raise ValueError."""
    if not names:
        return default_kernels()
    unknown = [n for n in names if n not in BY_NAME]
    if unknown:
        raise ValueError(f"unknown kernel(s) {', '.join(unknown)}; known: {', '.join(BY_NAME)}")
    return [k for k in KERNELS if k.name in set(names)]


def _run(cmd: list[str], step: str, cwd: str | None = None) -> subprocess.CompletedProcess:
    p = subprocess.run(cmd, cwd=cwd, capture_output=True, text=True)
    if p.returncode != 0:
        raise ImageError(f"{step}: `{' '.join(cmd)}` exited {p.returncode}: "
                         f"{(p.stderr or p.stdout).strip()[-600:]}")
    return p


def _download(package: str, into: str) -> str:
    """``apt-get download`` one package into ``into``; one ``apt-get update`` if apt does not
    know it yet (fresh machine). Returns the .deb path."""
    cmd = ["apt-get", "-q", "-o", "APT::Sandbox::User=root", "download", package]
    p = subprocess.run(cmd, cwd=into, capture_output=True, text=True)
    if p.returncode != 0:
        _run(["apt-get", "update", "-qq"], "apt-get update")
        _run(cmd, f"download {package}", cwd=into)
    debs = [f for f in os.listdir(into) if f.startswith(package + "_") and f.endswith(".deb")]
    if len(debs) != 1:
        raise ImageError(f"download {package}: expected one .deb in {into}, found {debs}")
    return os.path.join(into, debs[0])


def fetch(kernel: Kernel) -> str:
    """Make sure ``kernel`` is unpacked in the cache; return its vmlinuz path."""
    hidden = [h for h in GUEST_HIDDEN if os.path.realpath(CACHE).startswith(h + "/")]
    if hidden:
        raise ImageError(f"kernel cache {CACHE} is under {hidden[0]}, which the guest sees as an "
                         "empty tmpfs (its modules would be missing): set EMPTCP_KERNEL_CACHE")
    marker = os.path.join(kernel.root, ".complete")
    if os.path.exists(marker) and os.path.exists(kernel.vmlinuz):
        return kernel.vmlinuz
    for tool in ("apt-get", "dpkg", "depmod"):
        if shutil.which(tool) is None:
            raise ImageError(f"{tool} is not installed (apt-get install "
                             f"{'kmod' if tool == 'depmod' else tool})")
    os.makedirs(CACHE, exist_ok=True)
    work = os.path.join(CACHE, f".fetch-{kernel.name}-{os.getpid()}")
    shutil.rmtree(work, ignore_errors=True)
    os.makedirs(work)
    try:
        deb = _download(kernel.package, work)
        tree = os.path.join(work, "root")
        _run(["dpkg", "-x", deb, tree], f"unpack {os.path.basename(deb)}")
        if not os.path.exists(os.path.join(tree, "boot", f"vmlinuz-{kernel.release}")):
            raise ImageError(f"{kernel.package} has no boot/vmlinuz-{kernel.release} "
                             "(package and release in tests/kernels/images.py disagree)")
        _run(["depmod", "-b", tree, kernel.release], f"depmod {kernel.release}")
        shutil.rmtree(kernel.root, ignore_errors=True)
        os.rename(tree, kernel.root)
        with open(marker, "w") as f:
            f.write(os.path.basename(deb) + "\n")
    finally:
        shutil.rmtree(work, ignore_errors=True)
    return kernel.vmlinuz
