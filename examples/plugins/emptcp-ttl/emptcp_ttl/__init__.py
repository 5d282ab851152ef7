"""emptcp plugin ttl: the selector ``ttl_below`` and the action ``set_ttl``.

``ttl_below`` matches IPv4 packets whose TTL (IPv6: hop limit) is below
``ttl``; ``set_ttl`` rewrites the IPv4 TTL (fixing the header checksum) or the
IPv6 hop limit to ``ttl``. Both work on xdp, tc-ingress and tc-egress.
"""
from __future__ import annotations

import os

from emptcp.plugins import hookimpl
from emptcp.stages import HOOKS, Param, StageSpec

BPF_DIR = os.path.join(os.path.dirname(os.path.abspath(__file__)), "bpf")


def _encode_ttl(p: dict) -> bytes:
    # 1..255 does not fit the 6-bit immediate: a blob by reference,
    # struct emptcp_ttl_param { __u8 ttl; } (bpf/emptcp_ttl.h)
    return bytes([p["ttl"]])


def _ttl_param(what: str) -> Param:
    return Param("ttl", "int", min=1, max=255, description=what)


def stage_specs() -> list[StageSpec]:
    return [
        StageSpec(
            name="ttl_below", kind="selector", hooks=HOOKS,
            object=os.path.join(BPF_DIR, "ttl_below.o"),
            programs={"xdp": "emptcp_ttl_below_xdp", "tc": "emptcp_ttl_below_tc"},
            params=(_ttl_param("match when the IPv4 TTL / IPv6 hop limit is below this"),),
            encode=_encode_ttl,
            description="IPv4 packets with TTL < ttl, IPv6 packets with hop limit < ttl"),
        StageSpec(
            name="set_ttl", kind="action", hooks=HOOKS,
            object=os.path.join(BPF_DIR, "set_ttl.o"),
            programs={"xdp": "emptcp_set_ttl_xdp", "tc": "emptcp_set_ttl_tc"},
            params=(_ttl_param("new IPv4 TTL / IPv6 hop limit"),),
            encode=_encode_ttl,
            description="rewrite the IPv4 TTL (header checksum fixed) or the IPv6 hop limit"),
    ]


@hookimpl
def emptcp_stages() -> list[StageSpec]:
    return stage_specs()
