"""Build glue for plugin distributions: compile ``<pkg>/bpf/*.bpf.c`` while the wheel is built.

A plugin's ``setup.py`` is three lines::

    try:
        from emptcp.plugin_build import setup_plugin
    except ImportError:          # pip's build isolation hides the installed emptcp
        import sys, sysconfig; sys.path.append(sysconfig.get_paths()["purelib"])
        from emptcp.plugin_build import setup_plugin
    setup_plugin()

and its ``pyproject.toml`` keeps metadata only (``[build-system] requires =
["setuptools>=68"]``). emptcp is *not* a build requirement: it is not on PyPI,
so pip could not fetch it into an isolated build environment; instead the
build uses the emptcp installed in the interpreter that runs pip, whose headers
(:func:`emptcp.include_dir`) match the ABI the plugin will be loaded with.
``pip install ./plugin`` and ``pip install --no-build-isolation ./plugin`` both
work; so does ``pip wheel ./plugin`` followed by ``pip install plugin.whl``.

Every package found by setuptools that has a ``bpf/`` directory gets each
``bpf/NAME.bpf.c`` compiled to ``bpf/NAME.o`` inside the built package
(:func:`emptcp.build.compile.bpf_cflags`: ``-O2 -g -Wall -target bpf
-D__TARGET_ARCH_<arch>``, the Debian multiarch include dir, ``-I <emptcp include
dir> -I <pkg>/bpf``). A clang error
fails the build with clang's diagnostics. The sources (``bpf/*.bpf.c``,
``bpf/*.h``) ship next to the objects, so an installed plugin can be rebuilt
and preflighted with ``emptcp build <site-packages>/<pkg>/bpf/X.bpf.c -o /tmp/X.o``.
"""
from __future__ import annotations

import glob
import os
from typing import Any

from setuptools import setup
from setuptools.command.build_py import build_py

from .. import include_dir
from .compile import BuildError, compile_bpf, object_name

__all__ = ["BuildPyWithBpf", "setup_plugin", "compile_package_bpf"]


def compile_package_bpf(src_pkg_dir: str, out_pkg_dir: str) -> list[str]:
    """Compile ``src_pkg_dir/bpf/*.bpf.c`` into ``out_pkg_dir/bpf/*.o``; return the objects."""
    src_bpf = os.path.join(src_pkg_dir, "bpf")
    out = []
    for src in sorted(glob.glob(os.path.join(src_bpf, "*.bpf.c"))):
        obj = os.path.join(out_pkg_dir, "bpf", object_name(src) + ".o")
        compile_bpf(src, obj, [include_dir(), src_bpf])
        out.append(obj)
    return out


class BuildPyWithBpf(build_py):
    """``build_py`` that also compiles each package's BPF sources with emptcp's headers."""

    def run(self) -> None:
        super().run()
        self._bpf_outputs: list[str] = []
        editable = getattr(self, "editable_mode", False)
        for pkg in self.packages or ():
            src = self.get_package_dir(pkg)
            if not os.path.isdir(os.path.join(src, "bpf")):
                continue
            out = src if editable else os.path.join(self.build_lib, *pkg.split("."))
            try:
                built = compile_package_bpf(src, out)
            except BuildError as e:
                raise SystemExit(f"emptcp plugin build: {e}") from None
            for obj in built:
                print(f"emptcp: compiled {os.path.relpath(obj)}")
            self._bpf_outputs += built

    def get_outputs(self, include_bytecode: bool = True) -> list[str]:
        return super().get_outputs(include_bytecode) + list(getattr(self, "_bpf_outputs", []))


def setup_plugin(**kwargs: Any) -> Any:
    """``setuptools.setup`` with :class:`BuildPyWithBpf`; metadata comes from pyproject.toml.

    The BPF sources are shipped too (``bpf/*.bpf.c``, ``bpf/*.h``) so that
    ``emptcp build`` can rebuild them and error messages can show source lines.
    """
    cmdclass = dict(kwargs.pop("cmdclass", {}))
    cmdclass.setdefault("build_py", BuildPyWithBpf)
    package_data = dict(kwargs.pop("package_data", {}))
    # "" = every package (setuptools does not read "*" here)
    package_data[""] = list(package_data.get("", [])) + ["bpf/*.bpf.c", "bpf/*.h"]
    # package_data alone: include_package_data (pyproject's default) would also
    # run the manifest check, which warns about the non-package bpf/ directory
    kwargs.setdefault("include_package_data", False)
    return setup(cmdclass=cmdclass, package_data=package_data, **kwargs)
