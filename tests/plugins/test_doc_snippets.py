"""Every C snippet in the plugin-author docs compiles, and every stage among them
runs through the real chain.

A fenced ```c block in README.md or docs/plugins.md must be preceded by a marker
line saying what it is (an unmarked block fails the test, so no snippet goes
untested):

    <!-- compile: selector NAME -->   top-level code defining emptcp_NAME_xdp and/or _tc
    <!-- compile: action NAME -->     (add "changes": some test frame must come out changed)
    <!-- compile: body [xdp] -->      statements of an action body (XDP and TC, or XDP only)
    <!-- compile: file -->            a whole source file: compiled and loaded (verifier)

Each is compiled with emptcp.build.compile (the flags `emptcp build` uses) against
bpf/common; stages are loaded into ChainHarness and run on TCP (options at odd and
even offsets, IPv4/IPv6) and UDP frames on each hook they have a program for:
no error or missed tail call may be counted, and every frame an action does not drop
must still carry valid IP/TCP/UDP checksums (scapy recomputes them).
"""
from __future__ import annotations

import os
import re
import shutil

import pytest

from emptcp.build.compile import compile_bpf
from emptcp.stages import Param, StageSpec

from ..conftest import require

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
DOCS = ("README.md", "docs/plugins.md")
COMMON = os.path.join(REPO, "bpf", "common")
LICENSE = '\nchar LICENSE[] SEC("license") = "Dual BSD/GPL";\n'
DROP = {"xdp": 1, "tc-ingress": 2, "tc-egress": 2}


def snippets() -> list[tuple[str, list[str], str]]:
    out = []
    for doc in DOCS:
        lines = open(os.path.join(REPO, doc)).read().splitlines()
        for i, line in enumerate(lines):
            if line.strip() != "```c":
                continue
            end = next(j for j in range(i + 1, len(lines)) if lines[j].strip() == "```")
            marker = re.fullmatch(r"<!-- compile: (.*?) -->", lines[i - 1].strip() if i else "")
            out.append((f"{doc}:{i + 1}", marker.group(1).split() if marker else [],
                        "\n".join(lines[i + 1:end]) + "\n"))
    return out


SNIPPETS = snippets()


def test_every_c_block_is_marked():
    assert len(SNIPPETS) >= 9
    unmarked = [where for where, marker, _ in SNIPPETS if not marker]
    assert unmarked == [], f"C blocks without a <!-- compile: ... --> marker: {unmarked}"


def source(marker: list[str], code: str) -> tuple[str, str | None]:
    """The translation unit for a snippet, and the stage name to load (or None)."""
    mode = marker[0]
    head = "" if "#include" in code else '#include "emptcp.h"\n'
    if mode == "body":
        progs = [("xdp", "struct xdp_md")] + ([] if "xdp" in marker[1:] else
                                              [("tc", "struct __sk_buff")])
        code = "".join(f'SEC("{sec}")\nint emptcp_snippet_{sec}({t} *ctx)\n{{\n'
                       f"\tACTION_PRE_SEC\n\t{{\n{code}\t}}\n\tACTION_POST_SEC\n}}\n"
                       for sec, t in progs)
        return head + code + LICENSE, "snippet"
    tail = "" if "LICENSE" in code else LICENSE
    return head + code + tail, (marker[1] if mode in ("selector", "action") else None)


def frames() -> list[bytes]:
    from scapy.layers.inet import IP, TCP, UDP
    from scapy.layers.inet6 import IPv6
    from scapy.layers.l2 import Ether
    v4, v6 = IP(src="10.0.0.1", dst="10.0.0.2"), IPv6(src="fd00::1", dst="fd00::2")
    odd = [("NOP", None), ("MSS", 1460), ("WScale", 7), ("SAckOK", b""), ("NOP", None),
           ("NOP", None)]
    even = [("MSS", 1460), ("NOP", None), ("WScale", 7)]
    return [bytes(Ether() / v4 / TCP(dport=80, flags="S", options=odd) / (b"x" * 9)),
            bytes(Ether() / v4 / TCP(dport=80, flags="S", options=even)),
            bytes(Ether() / v4 / TCP(dport=443, flags="A") / (b"y" * 30)),
            bytes(Ether() / v6 / TCP(dport=80, flags="S", options=odd)),
            bytes(Ether() / v4 / UDP(dport=53) / (b"z" * 12))]


def checksums_ok(frame: bytes) -> bool:
    from scapy.layers.inet import IP, TCP, UDP
    from scapy.layers.l2 import Ether
    for layer in (IP, TCP, UDP):
        p = Ether(frame)
        if layer not in p:
            continue
        want = p[layer].chksum
        del p[layer].chksum
        if Ether(bytes(p))[layer].chksum != want:
            return False
    return True


@pytest.mark.parametrize("where,marker,code", [s for s in SNIPPETS if s[1]],
                         ids=[s[0] for s in SNIPPETS if s[1]])
def test_snippet(root, tmp_path, where, marker, code):
    require(shutil.which("clang") is not None, "clang is not installed")
    from emptcp.bpf.objects import ObjectSpec
    text, stage = source(marker, code)
    src = tmp_path / "snippet.bpf.c"
    src.write_text(text)
    obj = compile_bpf(str(src), str(tmp_path / "snippet.o"), include_dirs=[COMMON])
    with ObjectSpec(obj) as spec:
        names = set(spec.programs)
        spec.load().close()                      # every program passes the verifier
    if stage is None:
        return

    from emptcp.plugins.testing import ChainHarness
    programs = {t: f"emptcp_{stage}_{t}" for t in ("xdp", "tc") if f"emptcp_{stage}_{t}" in names}
    assert programs, f"{where}: no emptcp_{stage}_xdp/_tc in {sorted(names)}"
    hooks = (("xdp",) if "xdp" in programs else ()) + \
        (("tc-ingress", "tc-egress") if "tc" in programs else ())
    kind = "selector" if marker[0] == "selector" else "action"
    spec = StageSpec(name=stage, kind=kind, hooks=hooks, object=obj, programs=programs,
                     params=(Param("imm", "int", default=2, min=0, max=63),),
                     encode=lambda p: p["imm"])        # kind 2 (MSS) for has_opt
    changed = False
    with ChainHarness([spec], builtins=("count",)) as h:
        for hook in hooks:
            h.clear()
            if kind == "selector":
                h.policy(hook, selectors=[stage], actions=["count"])
            else:
                h.policy(hook, actions=[stage])
            for frame in frames():
                r = h.run(hook, frame)
                if kind == "action" and r.retval != DROP[hook]:   # pass or no verdict
                    assert checksums_ok(r.data), f"{where} on {hook}: checksum broken"
                    changed |= r.data != frame
            st = h.hook_stats(hook)
            assert (st["errors"], st["missed_tail_calls"]) == (0, 0), (where, hook, st)
            if kind == "selector":
                assert st["matched"] + st["unmatched"] == len(frames()), (where, hook, st)
    if "changes" in marker:
        assert changed, f"{where}: no test frame was changed"
