"""The plugin-facing C headers (bpf/common/*.h, shipped as emptcp.include_dir())
share one namespace with the plugin's own code: everything they declare is
prefixed ``emptcp_``/``EMPTCP_``, so a stage can include them together with
xdp-tutorial-style helpers (``struct hdr_cursor``, ``parse_ethhdr``...),
``TCPOPT_*`` or the kernel's ``csum_replace2``."""
from __future__ import annotations

import os
import re
import shutil
import struct
import subprocess

import pytest

from emptcp.build.compile import bpf_cflags, compile_bpf, find_clang
from emptcp.stages import HOOKS, Param, StageSpec

from ..conftest import require
from .conftest import BPF

COMMON = os.path.join(BPF, "common")
HERE = os.path.join(os.path.dirname(os.path.abspath(__file__)), "headers")

# the unprefixed names the stage-body API has always had (docs/abi.md §10)
PUBLIC_UNPREFIXED = {"SELECTOR_PRE_SEC", "SELECTOR_POST_SEC", "ACTION_PRE_SEC", "ACTION_POST_SEC"}


def _need_clang() -> None:
    require(shutil.which("clang") is not None, "clang is not installed")


@pytest.mark.parametrize("order", ["emptcp_first", "tutorial_first"])
def test_emptcp_h_compiles_next_to_tutorial_style_helpers(tmp_path, order):
    _need_clang()
    flags = ["-Werror"] + (["-DTUTORIAL_FIRST"] if order == "tutorial_first" else [])
    compile_bpf(os.path.join(HERE, "both.bpf.c"), str(tmp_path / "both.o"),
                include_dirs=[COMMON, HERE], extra_flags=flags)


def _names(kind_args: list[str]) -> str:
    cmd = [find_clang(), *bpf_cflags([COMMON]), *kind_args, "-x", "c", "-"]
    r = subprocess.run(cmd, input='#include "emptcp.h"\n', capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    return r.stdout


def test_every_name_the_headers_define_is_prefixed():
    _need_clang()
    # macros: #define lines that come from bpf/common (line markers say where)
    macros, where = set(), ""
    for line in _names(["-E", "-dD"]).splitlines():
        m = re.match(r'# \d+ "([^"]+)"', line)
        if m:
            where = m.group(1)
        elif line.startswith("#define ") and os.path.dirname(os.path.abspath(where)) == COMMON:
            macros.add(re.match(r"#define (\w+)", line).group(1))
    assert "EMPTCP_TCPOPT_NOP" in macros and "EMPTCP_IDX" in macros   # the scan sees them
    bad = sorted(m for m in macros if not re.match(r"(?i)_*emptcp_", m)
                 and m not in PUBLIC_UNPREFIXED)
    assert bad == [], f"unprefixed macros in bpf/common: {bad}"

    # declarations: top-level nodes of the AST whose location is in bpf/common
    decls, where = set(), ""
    for line in _names(["-fsyntax-only", "-fno-color-diagnostics", "-Xclang", "-ast-dump"]
                       ).splitlines():
        top = line.startswith(("|-", "`-"))
        m = re.search(r"<(/[^:<>]+?):\d+:\d+", line)
        if m:   # the dump names a file only when it changes
            where = m.group(1)
        if not top or " implicit " in line or os.path.dirname(os.path.abspath(where)) != COMMON:
            continue
        m = re.match(r"[|`]-(FunctionDecl|VarDecl|TypedefDecl|RecordDecl|EnumDecl)\b.*?"
                     r"(?:line|col|\.h):\d+:\d+>? (?:col:\d+ |line:\d+:\d+ )?(?:used |referenced )*"
                     r"(?:struct |union |enum )?(\w+)", line)
        if m and m.group(2) not in ("definition", "struct", "union"):
            decls.add(m.group(2))
    assert "emptcp_parse_ethhdr" in decls and "emptcp_hdr_cursor" in decls
    bad = sorted(d for d in decls if not re.match(r"_*emptcp_", d))
    assert bad == [], f"unprefixed declarations in bpf/common: {bad}"


def test_stage_using_both_runs_in_the_chain(root, tmp_path):
    _need_clang()
    from emptcp.plugins.testing import ChainHarness
    from scapy.layers.inet import IP, TCP
    from scapy.layers.l2 import Ether

    obj = compile_bpf(os.path.join(HERE, "both.bpf.c"), str(tmp_path / "both.o"),
                      include_dirs=[COMMON, HERE])
    spec = StageSpec(name="both_sel", kind="selector", hooks=HOOKS, object=obj,
                     programs={"xdp": "emptcp_both_sel_xdp", "tc": "emptcp_both_sel_tc"},
                     params=(Param("port_off", "int", default=0, min=0, max=63),),
                     encode=lambda p: p["port_off"])
    with ChainHarness([spec], builtins=("drop",)) as h:
        for kind, drop in (("xdp", 1), ("tc-ingress", 2)):
            h.clear()
            h.policy(kind, selectors=[("both_sel", {"port_off": 5})], actions=["drop"])
            hit = bytes(Ether() / IP(src="10.0.0.1", dst="10.0.0.2") / TCP(dport=8005))
            miss = bytes(Ether() / IP(src="10.0.0.1", dst="10.0.0.2") / TCP(dport=8006))
            assert h.run(kind, hit).retval == drop
            assert h.run(kind, miss).retval != drop
            assert h.hook_stats(kind)["matched"] == 1 and h.hook_stats(kind)["unmatched"] == 1
