"""The Python API (SelectorChain / ActionChain / PolicyChain / Config, emptcp.api.apply)
and the TOML file for the same policies produce identical kernel state."""
from __future__ import annotations

import json
import os
import subprocess
from typing import Any

import pytest

from emptcp import api
from emptcp.abi import (INSTANCE_BASE, MAX_HOOKS, MAX_POLICIES, PROG_ARRAY_SIZE, SLOTS_PER_GEN,
                        policy_index)
from emptcp.chain.config import parse_text
from emptcp.bpf.maps import Map
from emptcp.model import AND, OR, ActionChain, Config, PolicyChain, SelectorChain
from emptcp.netns import enter

from .conftest import EXAMPLES, Host

pytestmark = pytest.mark.slow

TWO_HOOKS = os.path.join(EXAMPLES, "two-hooks.toml")


def two_hooks_config() -> Config:
    """examples/two-hooks.toml, written with the Python API."""
    cfg = (Config()
           .hook("wan", interface="veth0", type="xdp", mode="native")
           .hook("lan-in", interface="veth1", type="tc-ingress")
           .hook("wan-out", interface="veth0", type="tc-egress")
           .service("web", [8080])
           .service("alt", ["9000-9100"]))
    web = (PolicyChain(SelectorChain().add("ip_pair").add("service", AND),
                       ActionChain().add("count"))
           .select(0, remote_addr="10.77.0.0/24")
           .select(1, ports="web", mode="local"))
    cfg.add(web, name="wan-web", hook="wan", priority=10)
    cfg.add(PolicyChain(actions=ActionChain().add("count")), name="wan-rest", hook="wan",
            priority=100)
    lan = PolicyChain(SelectorChain().add("service", ports="web", mode="local")
                      .add("service", OR, ports="alt", mode="local"),
                      ActionChain().add("count"))
    cfg.add(lan, name="lan-web-or-alt", hook="lan-in")
    out = PolicyChain(SelectorChain().add("ip_pair", local_addr="10.77.0.1/32"),
                      ActionChain().add("count"))
    cfg.add(out, name="wan-out-tcp", hook="wan-out")
    return cfg


def _prog_names() -> dict[int, str]:
    progs = json.loads(subprocess.run(["bpftool", "-j", "prog", "show"], capture_output=True,
                                      text=True, check=True).stdout)
    return {p["id"]: p.get("name", "") for p in progs}


def dump(pin_root: str, st: dict[str, Any]) -> dict[str, Any]:
    """status (minus times, ids, counters) + the active generation's tables, raw."""
    st = json.loads(json.dumps(st))
    st.pop("applied_at")
    for h in st["hooks"]:
        h.pop("counters")
        assert h["attached"], h
        h["attached"] = {"ifindex": h["attached"]["ifindex"]}
        for p in h["policies"]:
            for k in ("selectors", "actions"):
                for s in p[k]:
                    s.pop("counters")
    gen = st["generation"]
    maps = os.path.join(pin_root, "maps")
    lo, hi = policy_index(gen, 0, 0), policy_index(gen, 0, 0) + MAX_HOOKS * MAX_POLICIES
    with Map.from_pin(os.path.join(maps, "emptcp_policies"), key=int) as m:
        policies = {i: m[i].hex() for i in range(lo, hi) if any(m[i])}
    with Map.from_pin(os.path.join(maps, "emptcp_params"), key=int) as m:
        params = {k: v.hex() for k, v in m.items() if lo * 16 <= k < hi * 16}
    with Map.from_pin(os.path.join(maps, "emptcp_hooks")) as m:
        hooks = sorted((k.hex(), v.hex()) for k, v in m.items())
    names = _prog_names()
    slots = {}
    for pa in ("emptcp_xdp_progs", "emptcp_tc_progs"):
        with Map.from_pin(os.path.join(maps, pa), key=int, value=int) as m:
            # program selectors of the generation, then the action instances
            for slot in [*range(gen * SLOTS_PER_GEN, (gen + 1) * SLOTS_PER_GEN),
                         *range(INSTANCE_BASE, PROG_ARRAY_SIZE)]:
                try:
                    slots[f"{pa}[{slot}]"] = names[m[slot]]
                except KeyError:
                    pass
    # the classification of the built-in selectors, raw
    with Map.from_pin(os.path.join(maps, "emptcp_hook_rules"), key=int) as m:
        rules = {i: m[i].hex() for i in range(gen * MAX_HOOKS, (gen + 1) * MAX_HOOKS) if any(m[i])}
    with Map.from_pin(os.path.join(maps, "emptcp_keys")) as m:
        keys = sorted((k.hex(), v.hex()) for k, v in m.items() if k[0] == gen)
    with Map.from_pin(os.path.join(maps, "emptcp_prefixes")) as m:
        prefixes = sorted((k.hex(), m.lookup(k).hex()) for k in m.raw_keys() if k[4] == gen)
    assert policies and slots and rules
    return {"status": st, "policies": policies, "params": params, "hooks": hooks,
            "slots": slots, "rules": rules, "keys": keys, "prefixes": prefixes}


def test_api_and_toml_give_identical_kernel_state(host: Host) -> None:
    cfg = two_hooks_config()
    with open(TWO_HOOKS) as f:
        toml_cfg, _ = parse_text(f.read(), TWO_HOOKS)
    assert cfg == toml_cfg, (cfg.to_dict(), toml_cfg.to_dict())

    with enter(host.ns):  # this thread only: interfaces and links are namespace A's
        res = api.apply(cfg, host.pin_root)
        assert res.changed and res.generation == 0
        st_api = api.status(host.pin_root)
    from_api = dump(host.pin_root, st_api)
    assert from_api["status"] == dump(host.pin_root, host.status())["status"]  # CLI agrees
    with enter(host.ns):
        api.detach(pin_root=host.pin_root, all=True)
    host.assert_clean()

    host.apply(TWO_HOOKS)
    from_toml = dump(host.pin_root, host.status())
    assert from_toml == from_api
    host.detach_all()

    # the API config written out as TOML applies to the same state again
    path = f"/tmp/emptcp-api-{os.path.basename(host.pin_root)}.toml"
    try:
        with open(path, "w") as f:
            f.write(cfg.to_toml())
        host.apply(path)
        assert dump(host.pin_root, host.status()) == from_api
        # and the API applying the same thing on top is "no changes"
        with enter(host.ns):
            again = api.apply(cfg, host.pin_root)
        assert not again.changed and again.generation == 0
    finally:
        os.unlink(path)
    host.detach_all()
    host.assert_clean()


def test_to_toml_round_trips() -> None:
    cfg = two_hooks_config()
    text = cfg.to_toml()
    back, _ = parse_text(text, "<round-trip>")
    assert back == cfg
    assert back.to_toml() == text
    for name in sorted(os.listdir(EXAMPLES)):
        if name.endswith(".toml"):
            with open(os.path.join(EXAMPLES, name)) as f:
                c, _ = parse_text(f.read(), name)
            again, _ = parse_text(c.to_toml(), name)
            assert again == c, name


def test_positional_parameter_round_trips() -> None:
    """select(i, value) names the stage's first parameter; to_toml must stay loadable."""
    cfg = Config().hook("in", interface="veth0", type="xdp")
    pc = PolicyChain(SelectorChain().add("service"), ActionChain().add("set_recv_win")) \
        .select(0, [80, 443]).set(0, 1024)
    cfg.add(pc, name="p", hook="in")
    back, _ = parse_text(cfg.to_toml(), "<positional>")
    assert back == cfg
    from emptcp.chain.config import resolve
    r1 = resolve(cfg, api.stages(), check_interfaces=False)
    r2 = resolve(back, api.stages(), check_interfaces=False)
    assert r1.describe() == r2.describe()
    acts = r1.describe()["hooks"][0]["policies"][0]["actions"]
    assert acts[0]["params"] == {"window": 1024}


BAD_STAGE = r"""
#include "emptcp.h"
SEC("xdp")
int emptcp_badact_xdp(struct xdp_md *ctx)
{
	ACTION_PRE_SEC
	__u32 v = *(__u32 *)(data + 100);	/* no bounds check: the verifier refuses */
	if (v == 7)
		return XDP_DROP;
	ACTION_POST_SEC
}
char LICENSE[] SEC("license") = "Dual BSD/GPL";
"""


def test_verifier_rejection_names_stage_plugin_and_policy(root, tmp_path):
    """A stage the verifier rejects is reported with the stage, its plugin and the policies
    using it, then the verifier's own last lines -- and nothing is left pinned."""
    from emptcp import include_dir
    from emptcp.build.compile import compile_bpf
    from emptcp.chain.config import resolve
    from emptcp.chain.stages import HOOKS, StageSpec
    from emptcp.plugins.manager import get_plugin_manager
    from emptcp.runtime.engine import Engine, StageLoadError
    src = tmp_path / "badact.bpf.c"
    src.write_text(BAD_STAGE)
    obj = compile_bpf(str(src), str(tmp_path / "badact.o"), [include_dir()])
    bad = StageSpec(name="badact", kind="action", hooks=HOOKS, object=obj,
                    programs={"xdp": "emptcp_badact_xdp"}, plugin="badplug",
                    distribution="emptcp-badplug")
    stages = dict(get_plugin_manager().stages(), badact=bad)
    cfg = (Config().hook("h", interface="lo", type="xdp", mode="generic"))
    cfg.add(PolicyChain(SelectorChain(), ActionChain().add("count").add("badact")),
            name="uses-bad", hook="h")
    pin = f"/sys/fs/bpf/emptcp-test-badact-{os.getpid()}"
    with pytest.raises(StageLoadError) as e:
        Engine(pin).apply(resolve(cfg, stages))
    msg = str(e.value)
    assert "action 'badact'" in msg and "plugin 'badplug'" in msg and "emptcp-badplug" in msg
    assert "'uses-bad' on hook 'h'" in msg and "emptcp_badact_xdp" in msg
    assert "invalid access to packet" in msg, msg
    assert not os.path.exists(pin), os.listdir(pin)
