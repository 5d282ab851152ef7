"""Every examples/*.toml applies with the CLI in a namespace, shows in ``status --json``,
moves the expected counters under real traffic, and ``detach --all`` leaves nothing."""
from __future__ import annotations

import glob
import os
from typing import Any, Callable

import pytest

from emptcp.rig.capture import Capture

from .conftest import A_ADDR0, A_ADDR1, EXAMPLES, Host, ping, tc_mode, tcp_exchange

pytestmark = pytest.mark.slow


def policy(st: dict[str, Any], hook: str, name: str) -> dict[str, Any]:
    h = next(h for h in st["hooks"] if h["name"] == hook)
    return next(p for p in h["policies"] if p["name"] == name)


def packets(st: dict[str, Any], hook: str, name: str, kind: str = "actions", i: int = 0) -> int:
    return policy(st, hook, name)[kind][i]["counters"]["packets"]


def check_count(h: Host) -> None:
    before = packets(h.status(), "in", "count-all")
    ping(h.peer, A_ADDR0, count=5)
    st = h.status()
    assert packets(st, "in", "count-all") >= before + 5
    hook = st["hooks"][0]
    assert hook["counters"]["matched"] >= 5 and hook["counters"]["missed_tail_calls"] == 0


def check_web_window(h: Host) -> None:
    with Capture(h.peer, "peer0", "tcp src port 8080") as cap:
        assert tcp_exchange(h.ns, h.peer, A_ADDR0, 8080)
        cap.stop()
        pkts = cap.packets()
        cap.remove()
    assert pkts, "captured nothing from port 8080"
    assert {p.window for p in pkts} == {1024}, [(p.window, p.tcp_flags) for p in pkts]
    st = h.status()
    win = packets(st, "out", "web-small-window", i=1)
    assert win == len(pkts) or win >= len(pkts) - 1, (win, len(pkts))
    assert packets(st, "out", "web-small-window", i=0) == win
    # port 9000 is not in "web": the entry sees the packets (unmatched), the actions do not
    with Capture(h.peer, "peer0", "tcp src port 9000") as cap:
        assert tcp_exchange(h.ns, h.peer, A_ADDR0, 9000)
        cap.stop()
        other = cap.packets()
        cap.remove()
    assert other and 1024 not in {p.window for p in other}
    st2 = h.status()
    assert packets(st2, "out", "web-small-window", i=1) == win
    assert st2["hooks"][0]["counters"]["unmatched"] > st["hooks"][0]["counters"]["unmatched"]
    # the service selector is a lookup in the entry, not a stage with counters
    assert policy(st2, "out", "web-small-window")["selectors"][0]["classified"] is True


def check_two_hooks(h: Host) -> None:
    st0 = h.status()
    assert {x["name"]: x["type"] for x in st0["hooks"]} == \
        {"wan": "xdp", "lan-in": "tc-ingress", "wan-out": "tc-egress"}
    assert tcp_exchange(h.ns, h.peer, A_ADDR0, 8080)          # wan-web, wan-out-tcp
    st1 = h.status()
    web = packets(st1, "wan", "wan-web")
    assert web > 0
    assert packets(st1, "wan-out", "wan-out-tcp") > 0
    ping(h.peer, A_ADDR0, count=3)                              # not TCP: wan-rest
    st2 = h.status()
    assert packets(st2, "wan", "wan-web") == web
    assert packets(st2, "wan", "wan-rest") >= packets(st1, "wan", "wan-rest") + 3
    lan = packets(st2, "lan-in", "lan-web-or-alt")
    assert tcp_exchange(h.ns, h.peer, A_ADDR1, 9050)            # "alt" (second selector, or)
    st3 = h.status()
    lan3 = packets(st3, "lan-in", "lan-web-or-alt")
    assert lan3 > lan
    assert tcp_exchange(h.ns, h.peer, A_ADDR1, 7000)            # neither web nor alt
    st4 = h.status()
    assert packets(st4, "lan-in", "lan-web-or-alt") == lan3
    lan_hook = next(x for x in st4["hooks"] if x["name"] == "lan-in")
    assert lan_hook["counters"]["unmatched"] > 0
    assert all(x["counters"]["missed_tail_calls"] == 0 for x in st4["hooks"])


def check_drop_port(h: Host) -> None:
    assert not tcp_exchange(h.ns, h.peer, A_ADDR0, 9999, timeout=1.0)
    st = h.status()
    dropped = packets(st, "in", "drop-9999", i=1)
    assert dropped >= 1 and packets(st, "in", "drop-9999", i=0) == dropped
    assert tcp_exchange(h.ns, h.peer, A_ADDR0, 9998)
    ping(h.peer, A_ADDR0, count=2)
    assert packets(h.status(), "in", "drop-9999", i=1) == dropped


CHECKS: dict[str, Callable[[Host], None]] = {
    "count.toml": check_count,
    "web-window.toml": check_web_window,
    "two-hooks.toml": check_two_hooks,
    "drop-port.toml": check_drop_port,
}
FILES = sorted(os.path.basename(p) for p in glob.glob(os.path.join(EXAMPLES, "*.toml")))


def test_every_example_has_a_traffic_check():
    assert FILES, "no examples/*.toml"
    assert set(FILES) == set(CHECKS), "add a traffic check for each new example"


def test_readme_lists_every_example():
    with open(os.path.join(EXAMPLES, "README.md")) as f:
        text = f.read()
    for name in FILES:
        assert name in text, name


@pytest.mark.parametrize("name", FILES)
def test_example(host: Host, name: str) -> None:
    path = os.path.join(EXAMPLES, name)
    out = host.apply(path).stdout
    assert "applied generation 0" in out, out
    st = host.status()
    assert st["applied"] and st["generation"] == 0
    assert st["hooks"] and all(x["attached"] for x in st["hooks"])
    for x in st["hooks"]:
        assert x["attached"]["ifindex"] == host.ifindex(x["interface"])
    prog_ids = host.owned_prog_ids()
    assert len(prog_ids) >= len(st["hooks"]) + 1
    att = host.attachments()
    n_xdp = sum(1 for x in st["hooks"] if x["type"] == "xdp")
    assert len(att["xdp"]) == n_xdp
    tc = host.tc_attachments(att)                             # TCX links or cls_bpf filters
    assert sum(tc.values()) == len(st["hooks"]) - n_xdp
    assert tc == {f"{x['interface']}/{x['type']}": 1 for x in st["hooks"] if x["type"] != "xdp"}
    for x in st["hooks"]:                                     # status says how, truthfully
        assert x["attached"]["mode"] == ("xdp" if x["type"] == "xdp" else tc_mode()), x
    text = host.ok("status").stdout                           # ... and why, in the text
    if tc_mode() == "cls_bpf" and n_xdp < len(st["hooks"]):
        from emptcp.runtime.tcattach import tcx_supported
        why = "this kernel has no TCX" if not tcx_supported() else "EMPTCP_TC_ATTACH=cls_bpf"
        assert "cls_bpf filter" in text and why in text, text
    CHECKS[name](host)
    host.detach_all()
    host.assert_clean(prog_ids)
