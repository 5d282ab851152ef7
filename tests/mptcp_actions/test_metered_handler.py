"""emptcp-mptcp's ``metered`` handler against scripted path-manager events and a recording
run context: which selector entries it adds and removes (no kernel; the live behaviour is
tests/mptcp/test_metered.py)."""
from __future__ import annotations

import socket

import pytest

pytest.importorskip("emptcp_mptcp")

from emptcp.errors import ConfigError  # noqa: E402
from emptcp.mptcp.events import MptcpEvent  # noqa: E402
from emptcp_mptcp.metered import Metered, settings_of  # noqa: E402

LO = socket.if_nametoindex("lo")


class FakePolicy:
    def __init__(self, log, name):
        self.log, self.name = log, name

    def select(self, index, entry):
        self.log.append(("select", self.name, index, tuple(entry.values())))

    def unselect(self, index, entry):
        self.log.append(("unselect", self.name, index, tuple(entry.values())))


class FakeRun:
    pin_root = "/sys/fs/bpf/fake"

    def __init__(self, settings):
        self._settings, self.log = settings, []

    def settings(self, plugin):
        return self._settings if plugin == "mptcp" else {}

    def policy(self, name):
        return FakePolicy(self.log, name)


def ev(kind, token=7, ifindex=LO, sport=40001, code=10):
    return MptcpEvent(kind, code, token=token, family=4, saddr="127.0.0.1", sport=sport,
                      daddr="127.0.0.2", dport=80, ifindex=ifindex)


def test_subflows_over_metered_interfaces_are_selected_and_removed():
    run = FakeRun({"metered": {"interfaces": ["lo", "absent0"], "policy": "m", "selector": 0}})
    h = Metered()
    assert "backup" in h.handle(ev("sub_established"), run)
    assert h.handle(ev("sub_established"), run) is None            # once per subflow
    assert h.handle(ev("sub_established", ifindex=LO + 1000, sport=40002), run) is None
    assert h.handle(ev("sub_established", sport=40003), run)
    assert h.handle(ev("sub_closed", code=11), run)                 # 40001 goes
    assert h.handle(ev("sub_priority", code=13, sport=40003), run) is None
    assert h.handle(MptcpEvent("closed", 3, token=7), run)          # the rest of token 7
    assert h.handle(MptcpEvent("closed", 3, token=7), run) is None
    t = lambda p: ("127.0.0.1", p, "127.0.0.2", 80)
    assert run.log == [("select", "m", 0, t(40001)), ("select", "m", 0, t(40003)),
                       ("unselect", "m", 0, t(40001)), ("unselect", "m", 0, t(40003))]


def test_no_settings_no_action_and_no_context_no_action():
    run = FakeRun({})
    assert Metered().handle(ev("sub_established"), run) is None and run.log == []
    assert Metered().handle(ev("sub_established"), None) is None


@pytest.mark.parametrize("table, message", [
    ({"interfaces": []}, "non-empty list"),
    ({"interfaces": "lo"}, "non-empty list"),
    ({"interfaces": ["lo"], "policy": 3}, "'policy' must be"),
    ({"interfaces": ["lo"], "selector": -1}, "'selector' must be"),
    ({"interfaces": ["lo"], "metred": 1}, "unknown key"),
])
def test_bad_settings_are_named(table, message):
    with pytest.raises(ConfigError, match=message):
        settings_of(table)
    assert settings_of({"interfaces": ["lo"]}).policy == "metered"
