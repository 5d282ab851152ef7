"""Configuration validation without root or a kernel: TOML files, limits, resolution
against the installed stage specs. Every error names file:line and the key path.

Interfaces: the hooks of the shared bad-config table name ``veth0``; here they name
``lo`` (present in every network namespace), so interface checks run for real.
"""
from __future__ import annotations

import pytest

from emptcp.chain.config import LIMITS, load_file, parse_text, resolve
from emptcp.errors import ConfigError

from .cases import CASES, GOOD


@pytest.fixture(scope="module")
def stages():
    """The installed stage specs (built-ins and plugins), as the CLI sees them."""
    from emptcp.plugins.manager import PluginManager
    return PluginManager().stages()


def _validate(path: str, stages) -> None:
    cfg, loc = load_file(path)
    resolve(cfg, stages, loc)


def test_table_is_big_enough():
    assert len(CASES) >= 25
    assert len({c[0] for c in CASES}) == len(CASES)


def test_good_file_validates(tmp_path, stages):
    p = tmp_path / "good.toml"
    p.write_text(GOOD.replace("veth0", "lo"))
    cfg, loc = load_file(str(p))
    r = resolve(cfg, stages, loc)
    assert [h.name for h in r.hooks.values()] == ["in", "out"]
    assert r.hooks["out"].policies[0].selectors[0].params["ports"] == [(8080, 8080)]


@pytest.mark.parametrize("cid,text,key,line,word", CASES, ids=[c[0] for c in CASES])
def test_bad_file_names_file_line_and_key(tmp_path, stages, cid, text, key, line, word):
    path = tmp_path / f"{cid}.toml"
    path.write_text(text.replace("veth0", "lo"))
    with pytest.raises(ConfigError) as e:
        _validate(str(path), stages)
    msg = str(e.value)
    assert "\n" not in msg, msg
    where = f"{path}:{line}:" if line else f"{path}"
    assert msg.startswith(where), f"{msg!r} does not start with {where!r}"
    assert key in msg, f"{msg!r} does not name the key {key!r}"
    assert word.lower() in msg.lower(), f"{msg!r} does not say {word!r}"


def test_missing_file(tmp_path):
    with pytest.raises(ConfigError, match="cannot read") as e:
        load_file(str(tmp_path / "nope.toml"))
    assert str(tmp_path / "nope.toml") in str(e.value)


# ---- limits: exactly at the limit passes, one more fails -------------------------------
def _policy(name: str, hook: str, n_sel: int, n_act: int, sel: str = "mptcp_subtype") -> str:
    """A policy of n_sel selectors (program selectors unless ``sel`` says otherwise)."""
    one = ('{ use = "mptcp_subtype", subtype = 1 }' if sel == "mptcp_subtype"
           else f'{{ use = "{sel}", ports = [1], mode = "local" }}')
    sels = ", ".join([one] * n_sel)
    acts = ", ".join(['{ use = "count" }'] * n_act)
    return f'[[policy]]\nname = "{name}"\nhook = "{hook}"\nselectors = [ {sels} ]\n' \
           f'actions = [ {acts} ]\n'


HOOK_LO = '[hooks.in]\ninterface = "lo"\ntype = "xdp"\n'


@pytest.mark.parametrize("kind", ["selectors", "actions"])
def test_stage_limit_per_policy(stages, kind):
    n = LIMITS["stages"]
    assert n == 8
    ok = _policy("p", "in", n, n) if kind == "selectors" else _policy("p", "in", 1, n)
    resolve(parse_text(HOOK_LO + ok, "ok.toml")[0], stages)
    bad = _policy("p", "in", n + 1, 1) if kind == "selectors" else _policy("p", "in", 0, n + 1)
    with pytest.raises(ConfigError, match=rf"ok.toml:\d+: policy\[0\]\.{kind}: 9 {kind} is more "
                                          r"than the limit of 8"):
        parse_text(HOOK_LO + bad, "ok.toml")


def test_policies_per_hook_limit(stages):
    n = LIMITS["policies_per_hook"]
    assert n == 128
    text = HOOK_LO + "".join(_policy(f"p{i}", "in", 0, 1) for i in range(n))
    r = resolve(parse_text(text, "max.toml")[0], stages)
    assert len(r.hooks["in"].policies) == n
    text += _policy(f"p{n}", "in", 0, 1)
    cfg, loc = parse_text(text, "over.toml")
    with pytest.raises(ConfigError, match=r"over.toml:1: hooks.in: 129 policies on hook 'in' "
                                          r"is more than the limit of 128"):
        resolve(cfg, stages, loc)


def test_hooks_limit(stages):
    n = LIMITS["hooks"]
    assert n == 32

    def hooks(k: int) -> str:  # distinct (interface, type) pairs; names need not exist here
        types = ("xdp", "tc-ingress", "tc-egress")
        return "".join(f'[hooks.h{i}]\ninterface = "if{i // 3}"\ntype = "{types[i % 3]}"\n'
                       for i in range(k))
    cfg, loc = parse_text(hooks(n), "max.toml")
    assert len(resolve(cfg, stages, loc, check_interfaces=False).hooks) == n
    cfg, loc = parse_text(hooks(n + 1), "over.toml")
    with pytest.raises(ConfigError, match=r"over.toml:1: hooks: 33 hooks is more than the limit"):
        resolve(cfg, stages, loc, check_interfaces=False)


def test_tail_call_limit_counts_earlier_selectors(stages):
    assert LIMITS["tail_calls"] == 32
    # 3 policies of 8 program selectors + the 4th with 7 selectors and 1 action: 32 tail calls
    ok = HOOK_LO + "".join(_policy(f"p{i}", "in", 8, 1) for i in range(3)) \
        + _policy("p3", "in", 7, 1)
    resolve(parse_text(ok, "ok.toml")[0], stages)
    bad = HOOK_LO + "".join(_policy(f"p{i}", "in", 8, 1) for i in range(3)) \
        + _policy("p3", "in", 8, 1)
    cfg, loc = parse_text(bad, "bad.toml")
    with pytest.raises(ConfigError, match=r"bad.toml:\d+: policy\[3\]: .*'p3' may need 33 "
                                          r"tail calls"):
        resolve(cfg, stages, loc)


def test_builtin_selectors_cost_no_tail_calls(stages):
    """Classified by the entry: 128 policies of 8 service selectors fit a hook."""
    text = HOOK_LO + "".join(_policy(f"p{i}", "in", 8, 8, sel="service") for i in range(128))
    r = resolve(parse_text(text, "many.toml")[0], stages)
    assert len(r.hooks["in"].policies) == 128


def test_priority_orders_policies_and_ties_keep_file_order(stages):
    text = HOOK_LO + "".join(
        f'[[policy]]\nname = "{n}"\nhook = "in"\npriority = {p}\nactions = [ {{ use = "count" }} ]\n'
        for n, p in (("late", 20), ("first", -5), ("tie-a", 10), ("tie-b", 10)))
    r = resolve(parse_text(text, "prio.toml")[0], stages)
    assert [p.name for p in r.hooks["in"].policies] == ["first", "tie-a", "tie-b", "late"]


def test_hook_type_not_supported_by_stage(stages):
    """A stage names the hooks it supports; using it elsewhere is a located error."""
    from emptcp.chain.stages import StageSpec
    xdp_only = StageSpec("xdp_only", "action", ("xdp",), "/nonexistent.o", {"xdp": "p"},
                         plugin="test")
    text = '[hooks.h]\ninterface = "lo"\ntype = "tc-egress"\n\n[[policy]]\nname = "p"\n' \
           'hook = "h"\nactions = [ { use = "count" }, { use = "xdp_only" } ]\n'
    cfg, loc = parse_text(text, "hooks.toml")
    with pytest.raises(ConfigError) as e:
        resolve(cfg, {**stages, "xdp_only": xdp_only}, loc)
    assert str(e.value) == ("hooks.toml:8: policy[0].actions[1]: action 'xdp_only' does not "
                            "support tc-egress hooks (supports: xdp)")


def test_plugin_encoder_contract_is_enforced(stages):
    """A stage's encoder must return an immediate 0..63 or at most 64 bytes."""
    from emptcp.chain.stages import StageSpec
    from emptcp.errors import PluginError
    text = '[hooks.h]\ninterface = "lo"\ntype = "xdp"\n[[policy]]\nname = "p"\nhook = "h"\n' \
           'actions = [ { use = "bad" } ]\n'
    cfg, loc = parse_text(text, "enc.toml")
    for result, says in ((64, "outside 0..63"), (b"x" * 65, "65 bytes"), ("str", "not int or bytes")):
        bad = StageSpec("bad", "action", ("xdp",), "/x.o", {"xdp": "p"}, plugin="test",
                        encode=lambda p, r=result: r)
        with pytest.raises(PluginError, match=says):
            resolve(cfg, {**stages, "bad": bad}, loc)
