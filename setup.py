"""Build glue that pyproject.toml cannot express: the cffi extension and the BPF objects.

The built-in BPF programs (bpf/common, bpf/actions) are compiled with clang while
the wheel is built, and their headers are shipped as package data so plugins can
compile against them (``emptcp.include_dir()``).
"""
import os
import runpy
import shutil

from setuptools import setup
from setuptools.command.build_py import build_py

HERE = os.path.dirname(os.path.abspath(__file__))


class BuildPyWithBpf(build_py):
    def run(self) -> None:
        if not getattr(self, "editable_mode", False):
            # setuptools reuses ./build/lib: a file moved or removed since the last
            # build (a template, a module) would otherwise be installed again
            shutil.rmtree(os.path.join(self.build_lib, "emptcp"), ignore_errors=True)
        super().run()
        bpfbuild = runpy.run_path(os.path.join(HERE, "core", "emptcp", "build", "compile.py"))
        targets = [os.path.join(self.build_lib, "emptcp", "data")]
        if getattr(self, "editable_mode", False):
            targets = [os.path.join(HERE, "core", "emptcp", "data")]
        for data_dir in targets:
            bpfbuild["build_core_data"](HERE, data_dir)


setup(
    cffi_modules=["core/emptcp/bpf/_libbpf_build.py:ffibuilder"],
    cmdclass={"build_py": BuildPyWithBpf},
)
