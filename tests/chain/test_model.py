"""The policy model (emptcp.chain.model) round-trips through TOML: Config -> to_toml ->
parse_text gives the same configuration, for generated configurations too (hypothesis,
seeded by pytest's --hypothesis-seed / printed on failure). No root, no kernel."""
from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from emptcp.chain.config import parse_text
from emptcp.chain.model import AND, OR, ActionChain, Config, PolicyChain, SelectorChain

NAME = st.text("abcXYZ019_.-", min_size=1, max_size=12)
KEY = st.text("abcxyz_", min_size=1, max_size=10).filter(lambda k: k not in ("use", "op"))
SCALAR = st.one_of(st.integers(-2**31, 2**31), st.booleans(),
                   st.text("aZ 09\"\\'=[]{}#\u00e9\u2603\t", max_size=12))
RANGE = st.tuples(st.integers(0, 9999), st.integers(0, 9999)).map(lambda t: f"{t[0]}-{t[1]}")
VALUE = st.one_of(SCALAR, st.lists(st.one_of(st.integers(0, 65535), RANGE), max_size=4))
PARAMS = st.dictionaries(KEY, VALUE, max_size=3)


@st.composite
def configs(draw) -> Config:
    cfg = Config()
    hooks = draw(st.lists(NAME, min_size=1, max_size=3, unique=True))
    for i, h in enumerate(hooks):
        typ = draw(st.sampled_from(["xdp", "tc-ingress", "tc-egress"]))
        mode = draw(st.sampled_from([None, "native", "generic"])) if typ == "xdp" else None
        cfg.hook(h, interface=f"if{i}", type=typ, mode=mode)
    for s in draw(st.lists(NAME, max_size=2, unique=True)):
        cfg.service(s, draw(st.lists(st.integers(0, 65535), min_size=1, max_size=3)))
    for name in draw(st.lists(NAME, min_size=1, max_size=4, unique=True)):
        sc = SelectorChain()
        for _ in range(draw(st.integers(0, 3))):
            sc.add(draw(NAME), draw(st.sampled_from([AND, OR])), **draw(PARAMS))
        ac = ActionChain()
        for _ in range(draw(st.integers(1, 3))):
            ac.add(draw(NAME), **draw(PARAMS))
        cfg.add(PolicyChain(sc, ac), name=name, hook=draw(st.sampled_from(hooks)),
                priority=draw(st.integers(-1000, 1000)))
    return cfg


@settings(max_examples=60, deadline=None)
@given(configs())
def test_generated_configs_round_trip_through_toml(cfg):
    text = cfg.to_toml()
    back, _ = parse_text(text, "<generated>")
    assert back.to_dict() == cfg.to_dict()
    assert back.to_toml() == text


def test_to_dict_is_the_file_shape():
    cfg = Config().hook("wan", interface="eth0", type="xdp", mode="native").service("web", [80])
    cfg.add(PolicyChain(SelectorChain().add("service", ports="web")
                        .add("ip_pair", OR, remote_addr="10.0.0.0/8"),
                        ActionChain().add("count")), name="p", hook="wan", priority=3)
    assert cfg.to_dict() == {
        "hooks": {"wan": {"interface": "eth0", "type": "xdp", "mode": "native"}},
        "services": {"web": [80]},
        "policy": [{"name": "p", "hook": "wan", "priority": 3,
                    "selectors": [{"use": "service", "ports": "web"},
                                  {"use": "ip_pair", "op": "or", "remote_addr": "10.0.0.0/8"}],
                    "actions": [{"use": "count"}]}]}


def test_chain_api_errors():
    with pytest.raises(ValueError, match="'and' or 'or'"):
        SelectorChain().add("service", "xor")
    pc = PolicyChain(SelectorChain().add("service"), ActionChain().add("count"))
    with pytest.raises(IndexError, match="no stage 3"):
        pc.select(3, ports=[80])
    with pytest.raises(TypeError, match="at most one positional"):
        pc.set(0, 1, 2)


def test_added_chain_is_copied():
    """Config.add snapshots the chain: changing it afterwards changes nothing applied."""
    pc = PolicyChain(actions=ActionChain().add("set_recv_win", window=1))
    cfg = Config().hook("h", interface="lo")
    cfg.add(pc, name="p", hook="h")
    pc.set(0, window=2)
    assert cfg.policies[0].actions[0].params == {"window": 1}
