"""Compile emptcp BPF C sources with clang.

Used in three places: the core's wheel build (setup.py runs this file directly,
before the package exists, so it imports nothing from emptcp), plugin wheel
builds (:mod:`emptcp.plugin_build`) and ``emptcp build``.
"""
from __future__ import annotations

import glob
import os
import platform
import shutil
import subprocess

__all__ = ["BuildError", "find_clang", "bpf_cflags", "compile_bpf", "build_core_data"]

_ARCH = {"x86_64": "x86", "aarch64": "arm64", "armv7l": "arm", "ppc64le": "powerpc",
         "s390x": "s390", "riscv64": "riscv"}


class BuildError(Exception):
    """clang is missing or rejected a source file; the message carries its diagnostics."""

    def __init__(self, message: str, source: str | None = None, output: str = "") -> None:
        super().__init__(message)
        self.source = source
        self.output = output


def find_clang() -> str:
    for name in ("clang", "clang-16", "clang-15", "clang-14"):
        path = shutil.which(name)
        if path:
            return path
    raise BuildError("clang not found: install it (Debian/Ubuntu: apt-get install clang)")


def bpf_cflags(include_dirs: list[str] | tuple[str, ...] = ()) -> list[str]:
    """The flags every emptcp BPF object is built with."""
    machine = platform.machine()
    flags = ["-O2", "-g", "-Wall", "-Wno-unused-function", "-target", "bpf",
             f"-D__TARGET_ARCH_{_ARCH.get(machine, machine)}"]
    multiarch = f"/usr/include/{machine}-linux-gnu"
    if os.path.isdir(multiarch):  # Debian keeps asm/types.h here
        flags += ["-I", multiarch]
    for d in include_dirs:
        flags += ["-I", d]
    return flags


def compile_bpf(source: str, output: str, include_dirs: list[str] | tuple[str, ...] = (),
                extra_flags: list[str] | tuple[str, ...] = ()) -> str:
    """Compile one ``.bpf.c`` to an ELF object; raise BuildError with clang's output on failure."""
    if not os.path.isfile(source):
        raise BuildError(f"{source}: no such file", source)
    os.makedirs(os.path.dirname(os.path.abspath(output)), exist_ok=True)
    cmd = [find_clang(), *bpf_cflags(include_dirs), *extra_flags, "-c", source, "-o", output]
    proc = subprocess.run(cmd, capture_output=True, text=True)
    if proc.returncode != 0:
        raise BuildError(f"{source}: clang failed (exit {proc.returncode})\n{proc.stderr.strip()}",
                         source, proc.stderr)
    return output


def object_name(source: str) -> str:
    base = os.path.basename(source)
    return base[: -len(".bpf.c")] if base.endswith(".bpf.c") else os.path.splitext(base)[0]


def build_core_data(repo_root: str, data_dir: str) -> list[str]:
    """Ship bpf/common headers and compile every built-in ``*.bpf.c`` into ``data_dir``."""
    common = os.path.join(repo_root, "bpf", "common")
    include_out = os.path.join(data_dir, "include")
    obj_out = os.path.join(data_dir, "bpf")
    os.makedirs(include_out, exist_ok=True)
    os.makedirs(obj_out, exist_ok=True)
    for header in glob.glob(os.path.join(common, "*.h")) + glob.glob(os.path.join(common, "*.md")):
        shutil.copy2(header, include_out)
    built = []
    sources = sorted(glob.glob(os.path.join(common, "*.bpf.c"))
                     + glob.glob(os.path.join(repo_root, "bpf", "actions", "*.bpf.c")))
    for src in sources:
        out = os.path.join(obj_out, object_name(src) + ".o")
        built.append(compile_bpf(src, out, [common]))
    return built
