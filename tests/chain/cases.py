"""Bad configuration files and one good one: shared by the pure-Python validation
tests (tests/chain, no root) and the CLI tests (tests/cli/test_bad_configs.py, which
also checks that nothing in the kernel changes)."""
from __future__ import annotations

GOOD = """\
[hooks.in]
interface = "veth0"
type = "xdp"

[hooks.out]
interface = "veth0"
type = "tc-egress"

[services]
web = [8080]

[[policy]]
name = "count-all"
hook = "in"
actions = [ { use = "count" } ]

[[policy]]
name = "web"
hook = "out"
selectors = [ { use = "service", ports = "web" } ]
actions = [ { use = "count" } ]
"""

HOOK = '[hooks.in]\ninterface = "veth0"\ntype = "xdp"\n\n'


def pol(body: str, name: str = "p", hook: str = "in") -> str:
    return f'[[policy]]\nname = "{name}"\nhook = "{hook}"\n{body}\n'


COUNT = 'actions = [ { use = "count" } ]'

#: (id, file text, key the message must name, line the message must name or None,
#:  a word the message must contain)
CASES: list[tuple[str, str, str, int | None, str]] = [
    ("syntax-error", HOOK + '[[policy]\nname = "p"\n', "", 5, "syntax"),
    ("syntax-unterminated-string", HOOK + 'x = "abc\n', "", 5, "syntax"),
    ("unknown-top-level-key", HOOK + "[colors]\nred = 1\n" + pol(COUNT), "colors", 5,
     "unknown top-level"),
    ("unknown-hook-key", '[hooks.in]\ninterface = "veth0"\ntype = "xdp"\nspeed = 1\n'
     + pol(COUNT), "speed", 4, "unknown key"),
    ("unknown-hook-type", '[hooks.in]\ninterface = "veth0"\ntype = "tc-sideways"\n'
     + pol(COUNT), "type", 3, "unknown hook type"),
    ("mode-on-tc-hook", '[hooks.in]\ninterface = "veth0"\ntype = "tc-ingress"\n'
     'mode = "native"\n' + pol(COUNT), "mode", 4, "xdp"),
    ("bad-xdp-mode", '[hooks.in]\ninterface = "veth0"\ntype = "xdp"\nmode = "turbo"\n'
     + pol(COUNT), "mode", 4, "turbo"),
    ("position-on-xdp-hook", '[hooks.in]\ninterface = "veth0"\ntype = "xdp"\n'
     'position = "first"\n' + pol(COUNT), "position", 4, "tc-ingress and tc-egress"),
    ("bad-tc-position", '[hooks.in]\ninterface = "veth0"\ntype = "tc-ingress"\n'
     'position = "middle"\n' + pol(COUNT), "position", 4, "'first'"),
    ("hook-without-interface", '[hooks.in]\ntype = "xdp"\n' + pol(COUNT), "interface", 1,
     "interface"),
    ("unknown-action", HOOK + pol('actions = [ { use = "teleport" } ]'), "actions", 8,
     "unknown action"),
    ("unknown-selector", HOOK + pol('selectors = [ { use = "by_mood" } ]\n' + COUNT),
     "selectors", 8, "unknown selector"),
    ("selector-used-as-action", HOOK + pol('actions = [ { use = "ip_pair", '
                                           'remote_addr = "10.0.0.0/8" } ]'),
     "actions", 8, "is a selector"),
    ("action-used-as-selector", HOOK + pol('selectors = [ { use = "drop" } ]\n' + COUNT),
     "selectors", 8, "is an action"),
    ("wrong-param-type", HOOK + pol('actions = [ { use = "set_recv_win", window = "big" } ]'),
     "window", 8, "window"),
    ("param-out-of-range", HOOK + pol('actions = [ { use = "set_recv_win", '
                                      'window = 70000 } ]'), "window", 8, "65535"),
    ("port-out-of-range", HOOK + pol('selectors = [ { use = "service", ports = [70000] } ]\n'
                                     + COUNT), "ports", 8, "70000"),
    ("port-range-reversed", HOOK + pol('selectors = [ { use = "service", ports = ["90-80"] } ]'
                                       "\n" + COUNT), "ports", 8, "90-80"),
    ("bad-cidr", HOOK + pol('selectors = [ { use = "ip_pair", remote_addr = "10.0.0.0/33" } ]\n'
                            + COUNT), "remote_addr", 8, "10.0.0.0/33"),
    ("bad-ip", HOOK + pol('selectors = [ { use = "ip_pair", local_addr = "10.0.300.1" } ]\n'
                          + COUNT), "local_addr", 8, "10.0.300.1"),
    ("duplicate-policy-names", HOOK + pol(COUNT, name="twice") + pol(COUNT, name="twice"),
     "name", 10, "duplicate"),
    ("chain-longer-than-8", HOOK + pol("actions = [ "
                                       + ", ".join(['{ use = "count" }'] * 9) + " ]"),
     "actions", 8, "limit"),
    ("unknown-hook-reference", HOOK + pol(COUNT, hook="nowhere"), "hook", 7, "nowhere"),
    ("missing-use", HOOK + pol('actions = [ { window = 10 } ]'), "actions", 8, "use"),
    ("missing-name", HOOK + '[[policy]]\nhook = "in"\n' + COUNT + "\n", "name", 5, "name"),
    ("missing-hook", HOOK + '[[policy]]\nname = "p"\n' + COUNT + "\n", "hook", 5, "hook"),
    ("unknown-param", HOOK + pol('actions = [ { use = "count", colour = "red" } ]'),
     "colour", 8, "unknown parameter"),
    ("missing-required-param", HOOK + pol('actions = [ { use = "set_recv_win" } ]'),
     "actions", 8, "window"),
    ("unknown-service-name", HOOK + pol('selectors = [ { use = "service", ports = "gopher" } ]\n'
                                        + COUNT), "ports", 8, "gopher"),
    ("op-on-action", HOOK + pol('actions = [ { use = "count", op = "or" } ]'), "op", 8,
     "selectors only"),
    ("bad-op", HOOK + pol('selectors = [ { use = "service", ports = [80] }, '
                          '{ use = "service", ports = [81], op = "xor" } ]\n' + COUNT),
     "op", 8, "xor"),
    ("priority-not-int", HOOK + pol('priority = "high"\n' + COUNT), "priority", 8, "integer"),
    ("unknown-policy-key", HOOK + pol('weight = 3\n' + COUNT), "weight", 8, "unknown key"),
    ("interface-does-not-exist", '[hooks.in]\ninterface = "nosuch0"\ntype = "xdp"\n'
     + pol(COUNT), "interface", 2, "nosuch0"),
    ("redirect-to-missing-iface", HOOK + pol('actions = [ { use = "redirect", '
                                             'iface = "nosuch1" } ]'), "iface", 8, "nosuch1"),
    ("too-many-tail-calls", HOOK + "".join(
        pol('selectors = [ ' + ", ".join(['{ use = "mptcp_subtype", subtype = 1 }'] * 8) + ' ]\n'
            + COUNT, name=f"p{i}") for i in range(5)), "policy[3]", 20, "33 tail calls"),
    ("too-many-rules", HOOK + "".join(pol('selectors = [ ' + ", ".join(
        ['{ use = "service", ports = [1] }'] * 8) + ' ]\n' + COUNT, name=f"p{i}")
        for i in range(2)), "policy[1]", 10, "512 rules"),
    ("empty-actions", HOOK + pol("actions = []"), "actions", 8, "at least one action"),
    ("no-actions", HOOK + pol('selectors = [ { use = "service", ports = [80] } ]'), "actions",
     5, "at least one action"),
    ("two-hooks-same-attach-point", HOOK + '[hooks.again]\ninterface = "veth0"\ntype = "xdp"\n'
     + pol(COUNT), "again", 5, "already"),
    ("policy-not-a-table-array", 'policy = "all"\n' + HOOK, "policy", 1, "[[policy]]"),
    ("service-not-a-list", HOOK + "[services]\nweb = 80\n" + pol(COUNT), "web", 6, "list"),
]
