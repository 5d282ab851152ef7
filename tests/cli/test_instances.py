"""Action instances under ``emptcp apply`` (pinned state, engine): reused while a kept
generation uses them, freed when none does, none left by a failed apply or by detach.

The oracles are outside emptcp: bpftool dumps the pinned prog arrays and says whether a
program id still exists; the pin tree is listed with os.walk. Hooks go on ``lo`` of a
private network namespace (XDP generic mode, TCX), so no veth rig is needed.
"""
from __future__ import annotations

import json
import os
import shutil
import subprocess
import time
import uuid

import pytest

from emptcp import abi
from emptcp.model import ActionChain, Config, PolicyChain
from emptcp.netns import enter

from .test_api import BAD_STAGE

pytestmark = pytest.mark.slow

#: pin roots /sys/fs/bpf/<prefix>-test-inst-*, namespaces <prefix>-inst-*
PREFIX = os.environ.get("EMPTCP_TEST_PREFIX", "").strip() or "emptcp"

#: an action the verifier refuses (the same source the API test uses)
BAD_ACTION = BAD_STAGE


@pytest.fixture
def lo_ns(root):
    ns = f"{PREFIX}-inst-{uuid.uuid4().hex[:8]}"
    subprocess.run(["ip", "netns", "add", ns], check=True)
    try:
        subprocess.run(["nsenter", f"--net=/var/run/netns/{ns}", "--", "ip", "link", "set",
                        "lo", "up"], check=True)
        yield ns
    finally:
        subprocess.run(["ip", "netns", "del", ns], check=False)


@pytest.fixture
def pin_root(root):
    path = f"/sys/fs/bpf/{PREFIX}-test-inst-{uuid.uuid4().hex[:8]}"
    yield path
    shutil.rmtree(path, ignore_errors=True)


def config(window: int, extra: list[tuple[str, dict]] = ()) -> Config:
    """xdp on lo: [*extra, set_recv_win(window), tcp_opt_del(kind 253)] -- two instances
    (tcp_opt_del is not fused); tc-ingress on lo: [count, count] -- one fused instance."""
    acts = ActionChain()
    for name, params in extra:
        acts.add(name, **params)
    acts.add("set_recv_win", window=window).add("tcp_opt_del", kind=253)
    cfg = (Config().hook("x", interface="lo", type="xdp", mode="generic")
           .hook("t", interface="lo", type="tc-ingress"))
    cfg.add(PolicyChain(actions=acts), name="win", hook="x")
    cfg.add(PolicyChain(actions=ActionChain().add("count").add("count")), name="cnt", hook="t")
    return cfg


def instances(pin_root: str, htype: str) -> dict[int, int]:
    """{prog-array key: prog id} of the instance region, from bpftool."""
    path = os.path.join(pin_root, "maps", f"emptcp_{htype}_progs")
    dump = json.loads(subprocess.run(["bpftool", "-j", "map", "dump", "pinned", path],
                                     capture_output=True, text=True, check=True).stdout)
    return {e["formatted"]["key"]: e["formatted"]["value"] for e in dump
            if e["formatted"]["key"] >= abi.INSTANCE_BASE}


def pin_tree(pin_root: str) -> list[str]:
    return sorted(os.path.relpath(os.path.join(d, f), pin_root)
                  for d, _, files in os.walk(pin_root) for f in files)


def still_loaded(prog_ids, timeout: float = 5.0) -> set[int]:
    alive = set(prog_ids)
    deadline = time.monotonic() + timeout
    while alive and time.monotonic() < deadline:
        alive = {i for i in alive if subprocess.run(
            ["bpftool", "prog", "show", "id", str(i)], capture_output=True).returncode == 0}
        if alive:
            time.sleep(0.1)
    return alive


def test_instances_reused_collected_rolled_back_and_detached(lo_ns, pin_root, tmp_path):
    from emptcp import include_dir
    from emptcp.build.compile import compile_bpf
    from emptcp.chain.config import resolve
    from emptcp.chain.stages import HOOKS, StageSpec
    from emptcp.plugins.manager import get_plugin_manager
    from emptcp.runtime.engine import Engine, StageLoadError

    stages = dict(get_plugin_manager().stages())
    src = tmp_path / "badact.bpf.c"
    src.write_text(BAD_ACTION)
    stages["badact"] = StageSpec(
        name="badact", kind="action", hooks=HOOKS, plugin="test",
        object=compile_bpf(str(src), str(tmp_path / "badact.o"), [include_dir()]),
        programs={"xdp": "emptcp_badact_xdp"})
    engine = Engine(pin_root)
    seen: set[int] = set()

    def apply(cfg: Config):
        r = engine.apply(resolve(cfg, stages))
        for t in ("xdp", "tc"):
            seen.update(instances(pin_root, t).values())
        return r

    with enter(lo_ns):
        assert apply(config(100)).changed
        x1, t1 = instances(pin_root, "xdp"), instances(pin_root, "tc")
        assert (len(x1), len(t1)) == (2, 1)
        # same configuration: nothing loaded, nothing moved
        assert not apply(config(100)).changed
        assert (instances(pin_root, "xdp"), instances(pin_root, "tc")) == (x1, t1)
        # a new window: one new set_recv_win instance; tcp_opt_del (xdp) and tc kept
        apply(config(200))
        x2 = instances(pin_root, "xdp")
        assert len(x2) == 3 and set(x1.items()) < set(x2.items())
        assert instances(pin_root, "tc") == t1
        # a failed apply (verifier rejection after a new instance -- the fused
        # set_recv_win pair -- was loaded) changes nothing: no pin, no prog-array entry
        tree = pin_tree(pin_root)
        with pytest.raises(StageLoadError, match="badact"):
            apply(config(300, [("badact", {}), ("set_recv_win", {"window": 999})]))
        assert pin_tree(pin_root) == tree
        assert instances(pin_root, "xdp") == x2 and instances(pin_root, "tc") == t1
        # four more applies: generations keep the last four configurations (windows
        # 400..700), so 100 and 200 are collected: their programs leave the kernel
        for w in (400, 500, 600, 700):
            apply(config(w))
        x3 = instances(pin_root, "xdp")
        assert len(x3) == 1 + 4, x3
        gone = {x2[k] for k in x2} - set(x3.values())
        assert len(gone) == 2 and not still_loaded(gone)
        assert instances(pin_root, "tc") == t1
        engine.detach_all()
    assert not os.path.exists(pin_root)
    assert not still_loaded(seen), "instances still loaded after detach"


def test_first_apply_counts_packets_that_ran_during_it(lo_ns, pin_root, monkeypatch):
    """A first apply writes generation 0, the active one: packets run the policy as soon
    as the hook is attached. Seen in the kernel matrix (6.1 under emulation, a 25 s
    apply): the policy acted (MP_PRIO sent) during the apply and its counters were then
    zeroed, reading 0. Here pings cross the hook right after it is attached, inside the
    apply; the count stage must have counted them (oracle: ping's own report)."""
    from emptcp.chain.config import resolve
    from emptcp.plugins.manager import get_plugin_manager
    from emptcp.runtime.engine import Engine

    cfg = Config().hook("x", interface="lo", type="xdp", mode="generic")
    cfg.add(PolicyChain(actions=ActionChain().add("count")), name="all", hook="x")
    engine = Engine(pin_root)
    attach = Engine._attach
    sent: list[int] = []

    def attach_then_ping(self, *a, **kw):
        attach(self, *a, **kw)
        out = subprocess.run(["ping", "-c", "3", "-i", "0.05", "-W", "1", "127.0.0.1"],
                             capture_output=True, text=True).stdout
        sent.append(int(out.split(" received")[0].rsplit(None, 1)[-1]))   # replies seen
    monkeypatch.setattr(Engine, "_attach", attach_then_ping)
    with enter(lo_ns):
        engine.apply(resolve(cfg, get_plugin_manager().stages()))
        monkeypatch.undo()
        st = engine.status()
        counted = st["hooks"][0]["policies"][0]["actions"][0]["counters"]["packets"]
        engine.detach_all()
    # each echo crosses lo twice (request and reply), both through the XDP hook
    assert sent == [3] and counted >= 2 * sent[0], (sent, counted)
