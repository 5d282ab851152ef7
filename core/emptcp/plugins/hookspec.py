"""Hook specifications for emptcp plugins.

Read this on an installed system with ``python -m pydoc emptcp.plugins.hookspec``;
the plugin guide is docs/plugins.md in the emptcp source tree.

A plugin is a Python distribution that declares an entry point in the group
``emptcp``::

    [project.entry-points.emptcp]
    mptcp = "emptcp_mptcp"

The entry point names a module (or any object) that implements some of the
hooks below, marked with :data:`hookimpl`::

    from emptcp.plugins import hookimpl

    @hookimpl
    def emptcp_stages():
        return [StageSpec(...)]

Hook functions may accept any *subset* of the arguments named in the spec
(pluggy passes them by name). The built-in stages are registered through the
very same hooks (``emptcp.plugins.builtin``), so nothing a built-in does is
out of reach for a plugin.
"""
from __future__ import annotations

from typing import TYPE_CHECKING, Any

import pluggy

if TYPE_CHECKING:
    import argparse

    from ..runtime.events import Event
    from ..chain.stages import StageSpec
    from ..mptcp.events import MptcpEvent

#: entry-point group and pluggy project name
PROJECT = "emptcp"

#: marks the hook specifications below (emptcp-internal; plugins never need it)
hookspec_marker = pluggy.HookspecMarker(PROJECT)
#: marks a plugin's hook implementations: ``from emptcp.plugins import hookimpl``
hookimpl = pluggy.HookimplMarker(PROJECT)


@hookspec_marker
def emptcp_stages() -> "list[StageSpec]":
    """Return the selectors and actions this plugin provides.

    Called once per process, when the plugin manager collects stages (on
    ``emptcp plugins``, ``emptcp apply``, ``emptcp status``...), before any
    object is loaded into the kernel.

    :return: a list of :class:`emptcp.stages.StageSpec`. Each spec names:

        - ``name``: the stage's name as written in TOML (unique across all
          installed plugins and the built-ins);
        - ``kind``: ``"action"`` or ``"selector"``;
        - ``hooks``: the hooks it supports, a subset of
          ``("xdp", "tc-ingress", "tc-egress")``;
        - ``object``: absolute path of the compiled ELF object (usually inside
          the plugin's package: ``os.path.join(os.path.dirname(__file__),
          "bpf", "x.o")``);
        - ``programs``: program type -> program (C function) name in the
          object, e.g. ``{"xdp": "emptcp_myact_xdp", "tc": "emptcp_myact_tc"}``;
          ``"xdp"`` (a ``SEC("xdp")`` program) is needed for the xdp hook and
          ``"tc"`` (``SEC("tc")``) for either TC hook. Convention:
          ``emptcp_<stage>_xdp`` / ``emptcp_<stage>_tc`` (what
          ``EMPTCP_SELECTOR(name, fn)`` generates and the built-ins use).
          libbpf looks programs up by this full ELF name, so it only has to be
          unique within the object; the kernel keeps just the first 15
          characters as the program's name (``bpftool prog`` shows
          ``emptcp_myact_xd``);
        - ``params`` and ``encode``: the typed parameter schema
          (:class:`emptcp.stages.Param`) and the function turning the
          validated parameters into the stage's parameter (an ``int`` 0..63
          immediate or ``bytes`` of at most 64, the blob);
        - ``abi_version``: the chain context ABI the object was compiled
          against (:data:`emptcp.stages.ABI_VERSION`).

    The manager fills ``plugin`` and ``distribution`` itself and validates each
    spec (ABI version, object file present, one program per declared hook
    present in the object, no duplicate names). A spec that fails validation
    refuses the whole plugin with one :class:`emptcp.errors.PluginError`; other
    plugins and running chains are not affected.

    Return an empty list (or ``None``) to contribute nothing.
    """


@hookspec_marker
def emptcp_handle_event(event: "Event", run: Any) -> Any:
    """Handle one event from the data path.

    Called by ``emptcp run FILE`` -- the daemon: it applies FILE, then stays
    in the foreground polling the ``emptcp_events`` ring buffer until
    SIGINT/SIGTERM (``--on-exit keep|detach``, ``--timeout S``) -- for every
    record a stage submits, after decoding it into an
    :class:`emptcp.runtime.events.Event` (``event.name`` is ``"add_subflow"``,
    ``"mptcp_opt"``, ``"log"`` or ``"type N"``; ``event.tuple`` is the
    connection for the first two, ``event.payload`` the decoded payload,
    ``event.raw`` the whole record;
    ``event.hook`` / ``event.policy_name`` name the hook and policy of the
    applied configuration). ``emptcp events`` only prints the decoded events
    (``--json``, ``--count N``, ``--timeout S``); it does not call this hook.
    Tests call it through
    :meth:`emptcp.plugins.manager.PluginManager.handle_event`.

    Every plugin sees every event: ignore the types you do not know. The hook
    runs in the control-plane process (not in the kernel), may block briefly
    (e.g. a netlink request) and should not raise; an exception is reported
    with the plugin's name and the loop goes on with the next plugin.

    :param event: the decoded event.
    :param run: the running ``emptcp run`` (:class:`emptcp.plugins.context.RunContext`):
        ``run.pin_root``; ``run.settings(plugin)``, the applied file's
        ``[plugins.<plugin>]`` table (``{}`` if absent; read at each call, so a reload
        is seen); ``run.policy(name)``, an applied policy whose set-valued selectors
        (``tcp4tuple``, ``tcp2tuple``, ``service``) take run-time entries with
        ``.select(i, **entry)`` / ``.unselect(i, **entry)`` / ``.entries(i)`` (no
        reload; an ``entries = []`` tcp4tuple selector starts empty for this). Take
        the argument only if you need it (hooks get their arguments by name).
        ``None`` when a test calls the hook without one.
    :return: anything; ``PluginManager.handle_event(event)`` returns the
        non-``None`` results as ``(plugin, result)`` pairs. ``emptcp run``
        discards them (log what matters yourself, e.g. with ``logging``;
        ``emptcp -v run FILE`` shows INFO messages) and logs an exception
        as ``plugin 'NAME' ...: emptcp_handle_event raised ...``.
    """


@hookspec_marker
def emptcp_handle_mptcp_event(event: "MptcpEvent", run: Any) -> Any:
    """Handle one event of the kernel's MPTCP path manager.

    Called by ``emptcp run FILE`` for every message of the ``mptcp_pm`` generic
    netlink family's ``mptcp_pm_events`` multicast group in the network
    namespace ``emptcp run`` runs in, interleaved with the data-path events of
    :func:`emptcp_handle_event` in the order they arrive. ``emptcp run`` joins
    the group only when at least one plugin implements this hook.
    ``emptcp events --mptcp`` prints the same events (``--json``: one object
    per line) without calling this hook. Tests call it through
    :meth:`emptcp.plugins.manager.PluginManager.handle_mptcp_event`.

    ``event`` is an :class:`emptcp.mptcp.events.MptcpEvent`, decoded by the
    kernel's uapi (include/uapi/linux/mptcp_pm.h):

    - ``event.type``: ``"created"``, ``"established"``, ``"closed"``,
      ``"announced"``, ``"removed"``, ``"sub_established"``, ``"sub_closed"``,
      ``"sub_priority"``, ``"listener_created"``, ``"listener_closed"`` (or
      ``"event N"`` for a type this emptcp does not know; ignore those);
    - ``event.token``: the connection token (``int``; ``ss -M`` shows it in
      hex), the key of the userspace path manager's commands
      (:class:`emptcp.mptcp.pm.MptcpPM`: ``subflow_create``,
      ``subflow_destroy``, ``announce``, ``remove``, ``set_backup``);
    - ``event.family`` (4 or 6), ``event.saddr``/``event.sport`` (local end),
      ``event.daddr``/``event.dport`` (remote end), ``event.loc_id``/
      ``event.rem_id`` (address ids), ``event.ifindex``, ``event.backup`` (the
      subflow's backup bit as the *peer* set it: ``ss`` flag ``B``),
      ``event.error`` (sub_closed: the subflow's socket error),
      ``event.server_side``; a field the kernel did not send for this type is
      ``None``.

    The rules of :func:`emptcp_handle_event` apply: every plugin sees every
    event, the hook runs in the control-plane process and may block briefly
    (a path-manager request is fine: the kernel queues events meanwhile), and
    an exception is logged with the plugin's name without stopping the loop.

    :param event: the decoded path-manager event.
    :param run: the running ``emptcp run``, as for :func:`emptcp_handle_event`
        (pin root, ``[plugins.<name>]`` settings, ``run.policy(name).select(...)``).
        emptcp-mptcp's ``metered`` policy is built on this: on ``sub_established``
        over a metered interface it selects the subflow's 4-tuple, on
        ``sub_closed``/``closed`` it removes it again.
    :return: anything; ``PluginManager.handle_mptcp_event(event)`` returns the
        non-``None`` results as ``(plugin, result)`` pairs; ``emptcp run``
        logs them at INFO (``emptcp -v run FILE``).
    """


@hookspec_marker
def emptcp_add_commands(subparsers: "argparse._SubParsersAction") -> None:
    """Add sub-commands to the ``emptcp`` command line.

    Called once while the CLI builds its argparse parser, with the
    ``subparsers`` object of the top-level parser. Add parsers with
    ``subparsers.add_parser(name, help=...)`` and set
    ``parser.set_defaults(func=callable)``; ``callable(args)`` runs the command
    and returns the exit code (0 ok, 1 runtime error, 2 usage error).

    Prefix the command names with your plugin's name (``mptcp-...``) to avoid
    clashes; a name that is already taken refuses the plugin's commands.

    :param subparsers: the ``argparse`` sub-parser collection of ``emptcp``.
    """
