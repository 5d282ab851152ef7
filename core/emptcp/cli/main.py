"""The ``emptcp`` command line (also ``python -m emptcp``).

Start-up is kept short (``emptcp --help``, ``emptcp status``): this module and the
command modules it builds the parser from import only argparse at the top; a command
imports what it needs when it runs, and plugins are discovered only for the commands
that need them. ``tests/cli/test_startup.py`` holds that.
"""
from __future__ import annotations

import argparse
import os
import sys
import time

from . import flow_commands, operations, plugin_commands
from .. import DEFAULT_PIN_ROOT, __version__
from ..errors import ConfigError, EmptcpError, PluginError

TYPE_CHECKING = False  # as typing.TYPE_CHECKING, without importing typing
if TYPE_CHECKING:
    from typing import Any, Callable

EXIT_OK, EXIT_ERROR, EXIT_USAGE = 0, 1, 2

EPILOG = """\
exit codes: 0 success; 1 kernel/runtime error (verifier, permissions, I/O);
            2 bad input (configuration, arguments, plugin refused)

examples:
  emptcp apply examples/web-window.toml      apply a policy file (transactional)
  emptcp plan examples/web-window.toml       show what would change, verify, touch nothing
  emptcp status --json                       hooks, policies, per-stage counters
  emptcp events --json                       stream data-path events
  emptcp detach --all                        remove everything emptcp attached and pinned
  emptcp flow add conns --file flows.txt     add run-time entries to a policy's selector
  emptcp run --metrics :9436 policy.toml     apply, serve events and Prometheus metrics
  emptcp exporter --listen 127.0.0.1:9436    only the metrics (any process may apply)
  emptcp demo                                see emptcp steer a real MPTCP connection

Plugins may add commands (`emptcp plugins` lists the installed plugins); they
are loaded only when such a command is used.
"""


def plugin_manager() -> Any:
    """One PluginManager per CLI run: discovering and checking plugins costs milliseconds."""
    from ..plugins.manager import get_plugin_manager
    return get_plugin_manager()


def _pin_root(p: argparse.ArgumentParser) -> None:
    p.add_argument("--pin-root", default=os.environ.get("EMPTCP_PIN_ROOT", DEFAULT_PIN_ROOT),
                   help="bpffs directory holding emptcp's state (default: %(default)s; "
                        "env EMPTCP_PIN_ROOT)")


def build_parser(with_plugins: bool = True) -> argparse.ArgumentParser:
    """The argument parser; ``with_plugins`` adds the commands plugins provide, which
    means discovering and importing the installed plugins (skipped for core commands
    and ``--help``, to keep start-up short)."""
    parser = argparse.ArgumentParser(
        prog="emptcp", formatter_class=argparse.RawDescriptionHelpFormatter, epilog=EPILOG,
        description="Policy chains of small eBPF programs on XDP and TC hooks, "
                    "with Multipath TCP actions.")
    parser.add_argument("--version", action="version", version=f"emptcp {__version__}")
    parser.add_argument("-v", "--verbose", action="count", default=0,
                        help="log more (-vv: libbpf debug output)")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")

    p = sub.add_parser("apply", help="apply a TOML policy file (plan, load, fill a new "
                       "generation, flip)", description="Apply a policy file transactionally: "
                       "on any error the running configuration is left untouched. Re-applying "
                       "the same file changes nothing.")
    p.add_argument("file")
    p.add_argument("--dry-run", action="store_true", help="plan and verify only (like `plan`)")
    p.add_argument("--json", action="store_true", help="print the result as JSON")
    _pin_root(p)

    p = sub.add_parser("plan", help="show what applying FILE would change; verify; touch nothing")
    p.add_argument("file")
    p.add_argument("--json", action="store_true")
    _pin_root(p)

    p = sub.add_parser("status", help="hooks, policies, chains and per-stage counters")
    p.add_argument("--json", action="store_true", help="machine-readable output")
    _pin_root(p)

    p = sub.add_parser("detach", help="remove the hooks of one interface, or everything")
    p.add_argument("interface", nargs="?", help="interface whose hooks to remove")
    p.add_argument("--all", action="store_true", help="remove every attachment and pin")
    _pin_root(p)

    p = sub.add_parser("events", help="stream events from the data path (ring buffer), or "
                       "with --mptcp the kernel's MPTCP path-manager events")
    p.add_argument("--json", action="store_true", help="one JSON object per line")
    p.add_argument("--mptcp", action="store_true",
                   help="stream the MPTCP path manager's events (genl mptcp_pm, group "
                        "mptcp_pm_events: created, established, sub_established, "
                        "sub_closed, closed...) of this network namespace instead of the "
                        "data path's; needs nothing applied")
    p.add_argument("--count", type=int, default=0, help="stop after N events")
    p.add_argument("--timeout", type=float, default=0, help="stop after S seconds")
    _pin_root(p)

    p = sub.add_parser("run", help="apply FILE and stay in the foreground serving event "
                       "handlers (e.g. add_subflow); --watch re-applies on change",
                       description="Apply FILE and stay in the foreground: serve plugin event "
                       "handlers, re-apply FILE on SIGHUP (and with --watch whenever its "
                       "content changes: in-place writes, editors' write-and-rename, "
                       "Kubernetes ConfigMap symlink swaps). A new file that is invalid or "
                       "refused by the kernel is logged with file:line and counted "
                       "(emptcp_apply_failures_total); the running generation stays.")
    p.add_argument("file", help="the policy file (TOML) to apply and, with --watch, to follow")
    p.add_argument("--watch", action="store_true",
                   help="re-apply FILE whenever its content changes (checked every 0.1 s)")
    p.add_argument("--on-exit", choices=("keep", "detach"), default="detach",
                   help="on SIGTERM/SIGINT keep the configuration or detach it "
                        "(default: %(default)s)")
    p.add_argument("--timeout", type=float, default=0, help="exit after S seconds")
    p.add_argument("--metrics", metavar="ADDR:PORT",
                   help="serve Prometheus metrics at http://ADDR:PORT/metrics (counters as in "
                        "`status`, plus this process's applies; see `emptcp exporter -h`)")
    _pin_root(p)

    p = sub.add_parser("demo", help="build a two-path MPTCP rig in namespaces, apply a "
                       "scenario, show the evidence, tear down")
    p.add_argument("scenario", nargs="?", default="backup",
                   help="scenario name (see `emptcp demo --list`)")
    p.add_argument("--list", action="store_true", help="list scenarios")
    p.add_argument("--json", action="store_true")

    plugin_commands.add_parsers(sub)
    operations.add_parsers(sub)
    flow_commands.add_parsers(sub)
    if with_plugins:
        import logging
        try:
            for err in plugin_manager().add_commands(sub):
                logging.getLogger("emptcp").warning("%s", err)
        except Exception as e:  # a plugin's broken CLI must not break the core's
            logging.getLogger("emptcp").warning("plugin commands unavailable: %s", e)
    return parser


def _command_of(argv: list[str]) -> str | None:
    """The command word: the first argument that is not an option (top-level options
    take no values)."""
    return next((a for a in argv if not a.startswith("-")), None)


# ---- commands ----------------------------------------------------------------
def cmd_apply(args: argparse.Namespace, dry_run: bool = False) -> int:
    import json
    from ..runtime.api import apply
    result = apply(args.file, args.pin_root, dry_run=dry_run or args.dry_run,
                   plugins=plugin_manager())
    if args.json:
        print(json.dumps({"changed": result.changed, "generation": result.generation,
                          "dry_run": dry_run or args.dry_run, "changes": result.summary}))
        return EXIT_OK
    verb = "would change" if (dry_run or args.dry_run) else "applied"
    if not result.changed:
        print(result.summary[0] if result.summary else "no changes")
        return EXIT_OK
    for line in result.summary:
        print(line)
    if dry_run or args.dry_run:
        print(f"{verb}: {len(result.summary)} change(s); verifier preflight passed")
    else:
        print(f"{verb} generation {result.generation}")
    return EXIT_OK


def cmd_status(args: argparse.Namespace) -> int:
    import json
    from ..runtime.status import StatusReader   # reading needs no apply machinery
    from ..mptcp.status import format_text, policy_connections
    st = StatusReader(args.pin_root).status()
    st["mptcp"] = policy_connections(st)   # read from the kernel, this namespace
    if args.json:
        print(json.dumps(st, indent=2))
        return EXIT_OK
    for link in st.get("stale", []):
        print(f"warning: stale attachment {link['pin']} (link {link.get('link_id', '?')}, "
              f"ifindex {link.get('ifindex', '?')}) left by an interrupted apply; it passes "
              "every packet; the next apply or detach removes it")
    if not st["applied"]:
        print(f"nothing applied under {st['pin_root']}")
        return EXIT_OK
    print(f"pin root {st['pin_root']}  generation {st['generation']}  applied "
          f"{time.strftime('%Y-%m-%d %H:%M:%S', time.localtime(st['applied_at']))}")
    for h in st["hooks"]:
        c = h["counters"]
        a = h["attached"]
        if not a:
            att = "NOT ATTACHED"
        elif a.get("mode") == "cls_bpf":
            from ..runtime import tcattach
            why = ("this kernel has no TCX" if not tcattach.tcx_supported()
                   else f"{tcattach.ENV}=cls_bpf when applied")
            att = (f"cls_bpf filter handle {a['handle']:#x} priority {a['priority']} "
                   f"(prog {a['prog_id']}; {why})")
        else:
            att = f"{a.get('mode', 'link')} link {a['link_id']}"
        tcx = (h["attached"] or {}).get("tcx")
        if tcx and tcx.get("index") is not None:
            att += f", runs {tcx['index'] + 1} of {tcx['count']} TCX programs"
        mode = f" ({h['mode']})" if h.get("mode") else ""
        if h.get("position"):
            mode = f" (position {h['position']})"
        print(f"\nhook {h['name']}: {h['type']}{mode} on {h['interface']} "
              f"(ifindex {h['ifindex']}, {att})")
        print(f"  packets {c['packets']}  matched {c['matched']}  unmatched {c['unmatched']}  "
              f"missed tail calls {c['missed_tail_calls']}  errors {c['errors']}")
        for p in h["policies"]:
            print(f"  policy {p['name']} (priority {p['priority']})")
            for kind in ("selectors", "actions"):
                for i, s in enumerate(p[kind]):
                    op = f"{s['op']} " if kind == "selectors" and i else ""
                    params = " ".join(f"{k}={_short(v)}" for k, v in s["params"].items()
                                      if v is not None)
                    sc = s["counters"]
                    if s.get("classified"):
                        print(f"    {kind[:-1]:8} {op}{s['use']:<18} {params:<40} "
                              f"{'(lookup in the entry)':>33}")
                        continue
                    missed = f"  missed {sc['missed_tail_calls']}" if sc["missed_tail_calls"] else ""
                    print(f"    {kind[:-1]:8} {op}{s['use']:<18} {params:<40} "
                          f"{sc['packets']:>10} pkts {sc['bytes']:>12} bytes{missed}")
    for line in format_text(st["mptcp"]):
        print(line)
    return EXIT_OK


def _short(v: Any) -> str:
    """A parameter for one status line: long lists (entries) by their size, entries
    files by name."""
    if isinstance(v, list) and len(v) > 4:
        return f"[{len(v)} entries]"
    if isinstance(v, str) and "#sha256=" in v:
        return v.split("#sha256=", 1)[0]
    return str(v)


def cmd_detach(args: argparse.Namespace) -> int:
    from ..runtime.api import detach
    if not args.all and not args.interface:
        raise ConfigError("say which interface, or --all")
    removed = detach(args.interface, args.pin_root, all=args.all,
                     plugins=None if args.all else plugin_manager())
    print("removed: " + (", ".join(removed) if removed else "nothing (nothing was applied)"))
    return EXIT_OK


def _mptcp_monitor() -> Any:
    """A subscriber to the path manager's events in this process's network namespace."""
    from ..mptcp.events import MptcpEventMonitor
    return MptcpEventMonitor()


def _event_loop(pin_root: str, handle: Callable[[Any], None], stop: Callable[[], bool],
                poll_ms: int = 200, mptcp: Any = None,
                handle_mptcp: Callable[[Any], None] | None = None) -> None:
    """Decode ring-buffer records, name their hook after the applied configuration,
    and hand them to ``handle`` until ``stop()`` (checked after every event too).
    With ``mptcp`` (an :class:`emptcp.mptcp.events.MptcpEventMonitor`), its events go
    to ``handle_mptcp`` in the same loop, in the order they arrive."""
    import dataclasses
    from ..bpf.buffers import RingBuffer
    from ..runtime.status import StatusReader
    from ..runtime.events import decode as decode_event
    from ..bpf.maps import Map
    reader = StatusReader(pin_root)
    names: dict[int, tuple[str, list[str]]] = {}  # hook id -> (hook name, policy names)

    def on_record(raw: bytes) -> int:
        if stop():
            return 0  # past --count/--timeout: the rest of this batch is not shown
        ev = decode_event(raw)
        if ev.hook_id not in names:  # first sight, or a newer configuration: look again
            state = reader.state()
            doc = state[1] if state else {"hook_ids": {}, "resolved": {"hooks": []}}
            for h in doc["resolved"]["hooks"]:
                names[doc["hook_ids"][h["name"]]] = (h["name"], [p["name"] for p in h["policies"]])
        hook, policies = names.get(ev.hook_id, (None, []))
        policy = policies[ev.policy] if ev.policy < len(policies) else None
        handle(dataclasses.replace(ev, hook=hook, policy_name=policy))
        return 0
    path = reader.pins.map("emptcp_events")
    with Map.from_pin(path) as ring, RingBuffer(ring, on_record) as rb:
        if mptcp is None:
            while not stop():
                rb.poll(poll_ms)
            return
        import select
        while not stop():
            ready, _, _ = select.select([rb, mptcp], [], [], poll_ms / 1000)
            if rb in ready:
                rb.consume()
            if mptcp in ready:
                for ev in mptcp.read(0):
                    if stop():
                        break
                    handle_mptcp(ev)


def _mptcp_event_loop(handle: Callable[[Any], None], stop: Callable[[], bool],
                      poll_ms: int = 200) -> None:
    """Hand the path manager's events of this namespace to ``handle`` until ``stop()``."""
    with _mptcp_monitor() as mon:
        print("emptcp events: listening for MPTCP path-manager events (mptcp_pm_events) "
              "in this network namespace", file=sys.stderr, flush=True)
        while not stop():
            for ev in mon.read(poll_ms / 1000):
                if stop():
                    return
                handle(ev)


def cmd_events(args: argparse.Namespace) -> int:
    import json
    seen = 0
    deadline = time.monotonic() + args.timeout if args.timeout else None

    def show(ev: Any) -> None:
        nonlocal seen
        seen += 1
        d = ev.as_dict() if hasattr(ev, "as_dict") else dict(ev)
        if args.json:
            print(json.dumps(d), flush=True)
        elif d.get("source") == "mptcp_pm":  # path-manager event: its own one-line form
            print(f"{time.strftime('%H:%M:%S', time.localtime(ev.time))} {ev}", flush=True)
        else:
            print(" ".join(f"{k}={v}" for k, v in d.items()), flush=True)

    def stop() -> bool:
        return bool((args.count and seen >= args.count)
                    or (deadline and time.monotonic() > deadline))
    if getattr(args, "mptcp", False):
        _mptcp_event_loop(show, stop)
        return EXIT_OK
    _event_loop(args.pin_root, show, stop)
    return EXIT_OK


def cmd_run(args: argparse.Namespace) -> int:
    import logging
    import signal
    from ..runtime.api import apply, detach
    from ..runtime.metrics import RunStats, parse_listen
    from ..runtime.watch import ConfigWatcher, file_digest
    plugins = plugin_manager()
    if args.metrics:
        parse_listen(args.metrics)  # a bad address is bad input: refuse before applying
    run_stats = RunStats()
    applied = file_digest(args.file)
    log = logging.getLogger("emptcp.run")
    mptcp = None
    if plugins.wants("emptcp_handle_mptcp_event"):
        # subscribed before the apply: no event of a connection opened right after is lost
        try:
            mptcp = _mptcp_monitor()
        except OSError as e:
            log.warning("MPTCP path-manager events unavailable, emptcp_handle_mptcp_event "
                        "will not be called: %s", e)
    try:
        with run_stats.apply() as out:
            result = apply(args.file, args.pin_root, plugins=plugins)
            out["changed"] = result.changed
    except BaseException:
        if mptcp is not None:
            mptcp.close()
        raise
    server = operations.start_metrics(args.metrics, args.pin_root, run_stats) \
        if args.metrics else None
    # --watch: re-apply on every change of the file; SIGHUP: re-apply now (always)
    watcher = ConfigWatcher(args.file, operations.reloader(args.file, args.pin_root, plugins,
                                                           run_stats),
                            poll=args.watch, applied=applied)
    watcher.start()
    stopping = False

    def on_signal(signum: int, frame: Any) -> None:
        nonlocal stopping
        stopping = True
    # before the line that says we are up: a signal sent on reading it is honoured
    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)
    signal.signal(signal.SIGHUP, lambda *_: watcher.request())
    print(f"applied generation {result.generation}" if result.changed else result.summary[0],
          flush=True)
    deadline = time.monotonic() + args.timeout if args.timeout else None

    from ..plugins.context import RunContext
    run = RunContext(args.pin_root)

    def handle(ev: Any) -> None:
        # each plugin's handler runs even if another one raises; failures are logged
        plugins.handle_event(ev, on_error=lambda err: log.error("%s", err), run=run)

    def handle_mptcp(ev: Any) -> None:
        for name, r in plugins.handle_mptcp_event(ev, on_error=lambda err: log.error("%s", err),
                                                  run=run):
            log.info("plugin %s: %s", name, r)
    try:
        _event_loop(args.pin_root, handle,
                    lambda: stopping or bool(deadline and time.monotonic() > deadline),
                    mptcp=mptcp, handle_mptcp=handle_mptcp)
    finally:
        watcher.stop()      # no reload may run after (or during) the detach below
        watcher.join()
        if server is not None:
            server.shutdown()
        if mptcp is not None:
            mptcp.close()
        if args.on_exit == "detach":
            detach(pin_root=args.pin_root, all=True)
            print("detached", flush=True)
        else:
            print("configuration kept", flush=True)
    return EXIT_OK


def cmd_demo(args: argparse.Namespace) -> int:
    from .demo import list_scenarios, run_demo
    if args.list:
        for name, text in list_scenarios():
            print(f"{name:<16} {text}")
        return EXIT_OK
    return run_demo(args.scenario, as_json=args.json)


COMMANDS: dict[str, Callable[[argparse.Namespace], int]] = {
    "apply": cmd_apply, "plan": lambda a: cmd_apply(a, dry_run=True), "status": cmd_status,
    "detach": cmd_detach, "events": cmd_events, "run": cmd_run, "demo": cmd_demo,
}
#: commands of the core (no plugin discovery needed to parse them)
CORE_COMMANDS = (frozenset(COMMANDS) | frozenset(plugin_commands.COMMAND_NAMES)
                 | frozenset(operations.COMMAND_NAMES) | frozenset(flow_commands.COMMAND_NAMES))


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else list(argv)
    command = _command_of(argv)
    parser = build_parser(with_plugins=command is not None and command not in CORE_COMMANDS)
    args = parser.parse_args(argv)
    if args.command is None:
        parser.print_help()
        return EXIT_USAGE
    import logging   # here: --help, usage errors and no command exit without it
    level = {0: logging.WARNING, 1: logging.INFO}.get(args.verbose, logging.DEBUG)
    logging.basicConfig(level=level, format="emptcp: %(levelname)s: %(message)s")
    if args.verbose < 2:
        logging.getLogger("emptcp.bpf.libbpf").setLevel(logging.ERROR)
    if "emptcp.bpf.libbpf" in sys.modules:  # else it reads the level when first imported
        sys.modules["emptcp.bpf.libbpf"].sync_print_level()  # -vv: libbpf's debug lines
    fn = COMMANDS.get(args.command) or getattr(args, "func", None)
    if fn is None:
        parser.error(f"unknown command {args.command}")
    try:
        return fn(args)
    except (ConfigError, PluginError) as e:
        print(f"emptcp {args.command}: error: {e}", file=sys.stderr)
        return EXIT_USAGE
    except EmptcpError as e:
        print(f"emptcp {args.command}: error: {e}", file=sys.stderr)
        return EXIT_ERROR
    except BrokenPipeError:  # output piped into head & co.
        sys.stderr.close()
        return EXIT_OK
    except OSError as e:
        where = f" ({e.filename})" if e.filename else ""
        print(f"emptcp {args.command}: error: {e.strerror or e}{where}", file=sys.stderr)
        return EXIT_ERROR
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    sys.exit(main())
