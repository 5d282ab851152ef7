"""What ``emptcp run`` hands to event handlers besides the event: :class:`RunContext`.

A handler asks for it by naming the argument ``run`` (pluggy passes hook arguments by
name, so ``def emptcp_handle_mptcp_event(event)`` keeps working)::

    @hookimpl
    def emptcp_handle_mptcp_event(event, run):
        mine = run.settings("mptcp").get("metered", {})     # [plugins.mptcp.metered]
        if event.type == "sub_established" and event.ifindex in ...:
            run.policy("metered").select(0, local_addr=event.saddr, local_port=event.sport,
                                         remote_addr=event.daddr, remote_port=event.dport)

Everything is read from the pin root when asked (the applied configuration, not the
file ``emptcp run`` started with): after a reload (SIGHUP, ``--watch``) the next event
sees the new settings and policies.
"""
from __future__ import annotations

from typing import Any

from .. import DEFAULT_PIN_ROOT

__all__ = ["RunContext"]


class RunContext:
    """The running ``emptcp run``: its pin root, the applied configuration's plugin
    settings, and the applied policies' run-time selector entries."""

    def __init__(self, pin_root: str = DEFAULT_PIN_ROOT) -> None:
        #: the bpffs directory ``emptcp run --pin-root`` applied under
        self.pin_root = pin_root

    def config(self) -> dict[str, Any]:
        """The applied configuration as plain data (``Config.to_dict()``: ``hooks``,
        ``services``, ``plugins``, ``policy``); ``{}`` when nothing is applied."""
        from ..runtime.engine import Engine
        state = Engine(self.pin_root).state()
        return dict(state[1].get("config", {})) if state else {}

    def settings(self, plugin: str) -> dict[str, Any]:
        """The applied ``[plugins.<plugin>]`` table (``{}`` when the file has none).
        ``plugin`` is the name the plugin's entry point registers (``emptcp plugins``)."""
        return dict(self.config().get("plugins", {}).get(plugin, {}))

    def policy(self, name: str) -> Any:
        """The applied policy ``name`` (:class:`emptcp.runtime.api.AppliedPolicy`): its
        ``select(i, **entry)`` / ``unselect`` / ``entries`` change a set-valued selector's
        run-time entries with no reload."""
        from ..runtime.api import AppliedPolicy
        return AppliedPolicy(name, self.pin_root)

    def __repr__(self) -> str:
        return f"RunContext(pin_root={self.pin_root!r})"
