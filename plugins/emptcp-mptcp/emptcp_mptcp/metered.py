"""The ``metered`` policy: subflows over metered interfaces become backup as they join.

A multi-homed host (a phone with Wi-Fi and cellular, a site with fibre and an LTE
backup) marks some interfaces as *metered*. Every MPTCP subflow that joins over one of
them gets the backup flag at the peer -- the data path inserts MP_PRIO(B=1) into that
subflow's packets -- so the peer's scheduler sends on it only when no regular subflow is
usable: traffic fails over to the metered path when the preferred one goes down and
moves back when it returns. Per subflow (its 4-tuple), not per address range: a
connection to the same server over the preferred path is left alone.

Three pieces, all in the policy file that ``emptcp run`` applies::

    [hooks.cell]                      # where the metered subflows' packets leave
    interface = "wwan0"
    type = "tc-egress"

    [[policy]]
    name = "metered"
    hook = "cell"
    selectors = [ { use = "tcp4tuple", entries = [] } ]   # filled at run time
    actions = [ { use = "count" }, { use = "set_flow_priority", backup = true } ]

    [plugins.mptcp.metered]
    interfaces = ["wwan0"]            # required: the metered interfaces (names)
    policy = "metered"                # the policy whose selector gets the subflows
    selector = 0                      # its tcp4tuple selector (default: its only one)

:func:`handle` (called by ``emptcp_handle_mptcp_event``) follows the path manager's
events in ``emptcp run``'s network namespace: ``sub_established`` whose ``ifindex`` is a
metered interface adds the subflow's 4-tuple to the selector
(``run.policy(...).select``); ``established`` does the same for a connection whose
*first* subflow leaves over a metered interface; ``sub_closed`` removes the subflow's
entry and ``closed`` every entry of the connection. Subflows that existed before
``emptcp run`` started are not seen.

The peer decides when a backup subflow is used: Linux sends on it once no regular
subflow is active, i.e. when the preferred subflow is *stale* (``net.mptcp.
stale_loss_cnt`` retransmission timeouts without progress, default 4) or closed. On the
peer, ``stale_loss_cnt = 1`` and ``net.ipv4.tcp_rto_max_ms = 1000`` make failover and
return take about a second (the ``metered`` demo sets them on its server).
"""
from __future__ import annotations

import logging
import socket
from dataclasses import dataclass
from typing import Any

from emptcp.errors import ConfigError

__all__ = ["MeteredSettings", "settings_of", "Metered", "handle"]

PLUGIN = "mptcp"          # [plugins.mptcp] (the entry point's name)
SECTION = "metered"       # [plugins.mptcp.metered]
_KEYS = {"interfaces", "policy", "selector"}

log = logging.getLogger("emptcp.mptcp.metered")


@dataclass(frozen=True)
class MeteredSettings:
    interfaces: tuple[str, ...]
    policy: str = "metered"
    selector: int | None = None


def settings_of(table: Any) -> MeteredSettings | None:
    """The ``[plugins.mptcp.metered]`` table checked, or ``None`` when there is none."""
    if not table:
        return None
    where = f"[plugins.{PLUGIN}.{SECTION}]"
    if not isinstance(table, dict):
        raise ConfigError(f"{where} must be a table")
    bad = sorted(set(table) - _KEYS)
    if bad:
        raise ConfigError(f"{where}: unknown key(s) {', '.join(bad)} (expected: "
                          f"{', '.join(sorted(_KEYS))})")
    ifs = table.get("interfaces")
    if (not isinstance(ifs, list) or not ifs
            or not all(isinstance(i, str) and i for i in ifs)):
        raise ConfigError(f"{where}: 'interfaces' must be a non-empty list of interface names")
    policy = table.get("policy", "metered")
    if not isinstance(policy, str) or not policy:
        raise ConfigError(f"{where}: 'policy' must be a policy name")
    sel = table.get("selector")
    if sel is not None and (type(sel) is not int or sel < 0):
        raise ConfigError(f"{where}: 'selector' must be a selector index (0, 1, ...)")
    return MeteredSettings(tuple(ifs), policy, sel)


def _ifindexes(names: tuple[str, ...]) -> dict[int, str]:
    """ifindex -> name of the metered interfaces present in this namespace now (one that
    is absent, e.g. a modem not plugged in yet, is looked up again at the next event)."""
    out = {}
    for n in names:
        try:
            out[socket.if_nametoindex(n)] = n
        except OSError:
            pass
    return out


def _entry(event: Any) -> dict[str, Any]:
    return {"local_addr": event.saddr, "local_port": event.sport,
            "remote_addr": event.daddr, "remote_port": event.dport}


def _show(e: dict[str, Any]) -> str:
    return f"{e['local_addr']}:{e['local_port']} -> {e['remote_addr']}:{e['remote_port']}"


class Metered:
    """The handler's memory: which entries it added, per pin root and connection token,
    so that ``sub_closed`` / ``closed`` remove exactly those."""

    def __init__(self) -> None:
        #: (pin root, token) -> {4-tuple: (policy, selector)}
        self.entries: dict[tuple[str, int], dict[tuple, tuple[str, int | None]]] = {}

    def handle(self, event: Any, run: Any) -> str | None:
        if run is None:
            return None
        kind = getattr(event, "type", "")
        if kind not in ("established", "sub_established", "sub_closed", "closed"):
            return None
        if kind in ("sub_closed", "closed"):
            return self._forget(event, run)
        cfg = settings_of(run.settings(PLUGIN).get(SECTION))
        if cfg is None or event.saddr is None or event.sport is None:
            return None
        metered = _ifindexes(cfg.interfaces)
        ifindex = event.ifindex
        if kind == "established":          # the first subflow: no ifindex in the event
            from .pm import ifindex_of
            ifindex = ifindex_of(event.saddr)
        if ifindex not in metered:
            return None
        entry = _entry(event)
        key = tuple(entry.values())
        mine = self.entries.setdefault((run.pin_root, event.token), {})
        if key in mine:
            return None
        run.policy(cfg.policy).select(cfg.selector, entry)   # type: ignore[arg-type]
        mine[key] = (cfg.policy, cfg.selector)
        return (f"metered: subflow {_show(entry)} over {metered[ifindex]} (token "
                f"{event.token:x}) -> backup (policy {cfg.policy})")

    def _forget(self, event: Any, run: Any) -> str | None:
        mine = self.entries.get((run.pin_root, event.token))
        if not mine:
            return None
        if event.type == "closed":
            gone = list(mine)
            del self.entries[(run.pin_root, event.token)]
        else:
            key = tuple(_entry(event).values())
            gone = [key] if key in mine else []
        done = []
        for key in gone:
            policy, selector = mine.pop(key)
            entry = dict(zip(("local_addr", "local_port", "remote_addr", "remote_port"), key))
            try:
                run.policy(policy).unselect(selector, entry)     # type: ignore[arg-type]
            except ConfigError as e:      # policy gone with a reload: nothing to remove
                log.info("metered: %s: %s", _show(entry), e)
            done.append(_show(entry))
        if not done:
            return None
        return f"metered: {event.type} (token {event.token:x}): removed {', '.join(done)}"


_state = Metered()


def handle(event: Any, run: Any) -> str | None:
    """The ``metered`` policy's reaction to one path-manager event (see the module)."""
    return _state.handle(event, run)
