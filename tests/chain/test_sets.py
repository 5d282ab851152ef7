"""Set-valued built-in selectors in policy files (issue 9): lists of prefixes and ports,
tables of connections, and files of entries next to the policy file. No root needed:
resolution only (the kernel side is tests/datapath/test_equivalence.py and
tests/cli/test_flows.py)."""
from __future__ import annotations

import pytest

from emptcp.chain.config import load_file, resolve
from emptcp.chain.sets import SetParam, parse_entry, tcp4tuple_set
from emptcp.errors import ConfigError

HOOK = '[hooks.in]\ninterface = "lo"\ntype = "xdp"\n\n'


@pytest.fixture(scope="module")
def stages():
    from emptcp.plugins.manager import PluginManager
    return PluginManager().stages()


def resolved_selector(tmp_path, stages, selector: str):
    f = tmp_path / "p.toml"
    f.write_text(HOOK + f'[[policy]]\nname = "p"\nhook = "in"\nselectors = [ {selector} ]\n'
                 'actions = [ { use = "count" } ]\n')
    cfg, loc = load_file(str(f))
    return resolve(cfg, stages, loc).hooks["in"].policies[0].selectors[0].encoded


def keys(param: SetParam, dim: str) -> frozenset:
    return frozenset(k for alt in param.alternatives for d, e in alt if d == dim for k in e)


def test_ip_pair_takes_lists_of_prefixes_of_both_families(tmp_path, stages):
    p = resolved_selector(tmp_path, stages, '{ use = "ip_pair", local_addr = ["10.0.0.0/8", '
                          '"fd00::/8"], remote_addr = "10.1.0.0/16" }')
    assert {(f, plen) for f, plen, _ in keys(p, "laddr")} == {(4, 8), (6, 8)}
    assert {(f, plen) for f, plen, _ in keys(p, "raddr")} == {(4, 16)}


def test_tcp4tuple_entries_table(tmp_path, stages):
    p = resolved_selector(tmp_path, stages, '{ use = "tcp4tuple", entries = [ '
                          '{ local_addr = "10.0.0.1", local_port = 80, remote_addr = "10.0.0.2", '
                          'remote_port = 1 }, { local_addr = "10.0.0.1", local_port = 80, '
                          'remote_addr = "10.0.0.2", remote_port = 2 } ] }')
    assert p == tcp4tuple_set([("10.0.0.1", 80, "10.0.0.2", 1), ("10.0.0.1", 80, "10.0.0.2", 2)])


def test_entries_file_next_to_the_policy_file(tmp_path, stages):
    (tmp_path / "flows.txt").write_text("# local lport remote rport\n10.0.0.1 80 10.0.0.2 1\n"
                                        "10.0.0.1,80,10.0.0.2,2\n\n")
    p = resolved_selector(tmp_path, stages, '{ use = "tcp4tuple", entries = "flows.txt" }')
    assert len(keys(p, "flow")) == 2


def test_a_bad_line_in_an_entries_file_is_named(tmp_path, stages):
    (tmp_path / "flows.txt").write_text("10.0.0.1 80 10.0.0.2 1\n10.0.0.1 80 10.0.0.2\n")
    with pytest.raises(ConfigError, match=r"flows.txt:2: .*expected LOCAL_ADDR"):
        resolved_selector(tmp_path, stages, '{ use = "tcp4tuple", entries = "flows.txt" }')


def test_a_missing_entries_file_is_located_in_the_policy_file(tmp_path, stages):
    with pytest.raises(ConfigError, match=r"p.toml:\d+: .*entries.*nope.txt"):
        resolved_selector(tmp_path, stages, '{ use = "tcp4tuple", entries = "nope.txt" }')


def test_editing_the_entries_file_changes_the_configuration_digest(tmp_path, stages):
    from emptcp.chain.config import load_file
    flows = tmp_path / "flows.txt"
    f = tmp_path / "p.toml"
    f.write_text(HOOK + '[[policy]]\nname = "p"\nhook = "in"\nselectors = [ { use = "tcp4tuple", '
                 'entries = "flows.txt" } ]\nactions = [ { use = "count" } ]\n')
    digests = []
    for text in ("10.0.0.1 80 10.0.0.2 1\n", "10.0.0.1 80 10.0.0.2 2\n"):
        flows.write_text(text)
        cfg, loc = load_file(str(f))
        digests.append(resolve(cfg, stages, loc).digest())
    assert digests[0] != digests[1]


def test_service_has_no_range_count_limit(tmp_path, stages):
    ports = ", ".join(f'"{1000 + 10 * i}-{1005 + 10 * i}"' for i in range(40))
    p = resolved_selector(tmp_path, stages, f'{{ use = "service", ports = [{ports}] }}')
    assert len(keys(p, "lport")) == 40 * 6 and keys(p, "lport") == keys(p, "rport")


@pytest.mark.parametrize("stage,text,want", [
    ("tcp4tuple", "10.0.0.1 80 10.0.0.2 1",
     {"local_addr": "10.0.0.1", "local_port": 80, "remote_addr": "10.0.0.2", "remote_port": 1}),
    ("tcp2tuple", "80,443", {"local_port": 80, "remote_port": 443}),
    ("tcp2tuple", "fd00::1 fd00::2", {"local_addr": "fd00::1", "remote_addr": "fd00::2"}),
    ("service", "8000-8080", {"port": [8000, 8080]}),
    ("service", '{"port": 22}', {"port": 22}),
])
def test_entry_text_forms(stage, text, want):
    assert parse_entry(stage, text) == want
