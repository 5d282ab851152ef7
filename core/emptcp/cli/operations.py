"""CLI commands for running emptcp in production: ``emptcp exporter``, ``emptcp top``.

``add_parsers(subparsers)`` registers them; each sets ``func`` to a function
``(args) -> exit code`` (0 ok, 1 runtime error, 2 bad input). ``emptcp run
--metrics`` serves the same metrics from the process that applies
(:func:`start_metrics`).
"""
from __future__ import annotations

import argparse
import os
import time

TYPE_CHECKING = False  # as typing.TYPE_CHECKING, without importing typing
if TYPE_CHECKING:
    from typing import Any, Callable

__all__ = ["add_parsers", "cmd_exporter", "cmd_top", "start_metrics", "reloader"]

EXIT_OK = 0
#: the exporter's default address (override with --listen)
DEFAULT_LISTEN = "0.0.0.0:9436"

EXPORTER_EPILOG = """\
metrics (Prometheus text, one reading of `emptcp status` per scrape):
  emptcp_hook_{packets,matched,unmatched,missed_tail_calls,errors}_total
        labels hook, interface, type
  emptcp_stage_{packets,bytes,missed_tail_calls}_total
        labels hook, interface, policy, phase (selector|action), stage (index), use
  emptcp_active_generation, emptcp_generation_applied_timestamp_seconds,
  emptcp_config_info{digest}, emptcp_hook_attached, emptcp_hook_tcx_index,
  emptcp_stale_links, emptcp_up (0 when the pin root could not be read)
  `emptcp run --metrics` adds emptcp_applies_total, emptcp_apply_failures_total,
  emptcp_apply_duration_seconds, emptcp_config_last_reload_successful

examples:
  emptcp exporter                                  serve on 0.0.0.0:9436
  emptcp exporter --listen 127.0.0.1:9100          one address
  curl -s localhost:9436/metrics | grep emptcp_hook_packets_total
"""


TOP_EPILOG = """\
columns: PKT/S and BYTE/S of each stage; for a policy, MATCH/S is the rate of
its first action (every matched packet runs it); for a hook, the entry's rate
and its matched / unmatched rates. "-" = no rate (counters were reset).

examples:
  emptcp top                                   refresh every second
  emptcp top --once --json --interval 2        for scripts
"""


#: the commands this module adds
COMMAND_NAMES = ("exporter", "top")


def _pin_root_default() -> str:
    from .. import DEFAULT_PIN_ROOT
    return os.environ.get("EMPTCP_PIN_ROOT", DEFAULT_PIN_ROOT)


def add_parsers(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser(
        "exporter", help="serve emptcp's counters as Prometheus metrics (HTTP /metrics)",
        formatter_class=argparse.RawDescriptionHelpFormatter, epilog=EXPORTER_EPILOG,
        description="Serve the counters of one pin root as Prometheus metrics.\n\n"
                    "It only reads bpffs (like `emptcp status`), so it can run beside any\n"
                    "process that applies. Run it in the network namespace of the hooks\n"
                    "(host network): it looks interfaces up by index.")
    p.add_argument("--listen", default=DEFAULT_LISTEN, metavar="ADDR:PORT",
                   help="address to serve on (default: %(default)s; :PORT = all "
                        "addresses, [::1]:PORT for IPv6, port 0 = any free port)")
    p.add_argument("--timeout", type=float, default=0, help="exit after S seconds")
    p.add_argument("--pin-root", default=_pin_root_default(),
                   help="bpffs directory holding emptcp's state (default: %(default)s; "
                        "env EMPTCP_PIN_ROOT)")
    p.set_defaults(func=cmd_exporter)

    p = subparsers.add_parser(
        "top", help="live packet and byte rates per hook, policy and stage (q quits)",
        formatter_class=argparse.RawDescriptionHelpFormatter, epilog=TOP_EPILOG,
        description="Rates from two readings of the same counters `emptcp status` shows,\n"
                    "INTERVAL seconds apart, refreshed until q (or Ctrl-C).")
    p.add_argument("--interval", type=float, default=1.0, metavar="S",
                   help="seconds between readings (default: %(default)s)")
    p.add_argument("--once", action="store_true", help="one interval, print, exit")
    p.add_argument("--json", action="store_true", help="with --once: one JSON object")
    p.add_argument("--pin-root", default=_pin_root_default(),
                   help="bpffs directory holding emptcp's state (default: %(default)s; "
                        "env EMPTCP_PIN_ROOT)")
    p.set_defaults(func=cmd_top)


def start_metrics(listen: str, pin_root: str, run_stats: Any = None) -> Any:
    """Serve the metrics of ``pin_root`` on ``listen`` in a daemon thread; print
    the URL (with the bound port: ``--listen 127.0.0.1:0`` picks a free one)."""
    from ..runtime.metrics import registry_for, serve
    server = serve(listen, registry_for(pin_root, run_stats))
    host = server.server_address[0]
    host = f"[{host}]" if ":" in host else host
    print(f"serving metrics on http://{host}:{server.server_port}/metrics", flush=True)
    return server


def wait_for_signal(timeout: float = 0) -> None:
    """Block until SIGTERM/SIGINT (or ``timeout`` seconds)."""
    import signal
    import threading
    done = threading.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda *_: done.set())
    deadline = time.monotonic() + timeout if timeout else None
    while not done.is_set():
        left = None if deadline is None else deadline - time.monotonic()
        if left is not None and left <= 0:
            return
        done.wait(min(left, 1.0) if left is not None else 1.0)


def cmd_exporter(args: argparse.Namespace) -> int:
    server = start_metrics(args.listen, args.pin_root)
    try:
        wait_for_signal(args.timeout)
    finally:
        server.shutdown()
    return EXIT_OK


def reloader(path: str, pin_root: str, plugins: Any, run_stats: Any) -> Callable[[str], None]:
    """``reload(reason)`` for ``emptcp run``: re-apply ``path``, print what changed;
    a refused file is logged (file:line) and counted, the running generation stays."""
    import logging
    from ..errors import ConfigError, EmptcpError, PluginError
    from ..runtime.api import apply
    from ..runtime.engine import Engine
    log = logging.getLogger("emptcp.run")

    def running() -> str:
        state = Engine(pin_root).state()
        return f"generation {state[0]}" if state else "nothing"

    def reload(reason: str) -> None:
        try:
            with run_stats.apply() as out:
                result = apply(path, pin_root, plugins=plugins)
                out["changed"] = result.changed
        except (ConfigError, PluginError, EmptcpError, OSError) as e:
            kind = "invalid" if isinstance(e, (ConfigError, PluginError)) else "refused"
            log.error("reload (%s): %s %s, %s keeps running: %s", reason, path, kind,
                      running(), e)
            return
        if not result.changed:
            print(f"reload ({reason}): no changes", flush=True)
            return
        for line in result.summary:
            print(line, flush=True)
        print(f"reload ({reason}): applied generation {result.generation}", flush=True)
    return reload


def _num(v: float | None) -> str:
    if v is None:
        return "-"
    for unit, div in (("G", 1e9), ("M", 1e6), ("k", 1e3)):
        if v >= div:
            return f"{v / div:.1f}{unit}"
    return f"{v:.1f}"


def render_top(r: dict[str, Any], width: int = 80) -> list[str]:
    """The rates as lines of at most ``width`` characters."""
    gen = r["generation"] if r["applied"] else "-"
    lines = [f"emptcp top  generation {gen}  every {r['interval_s']:.1f} s  (q quits)"[:width],
             f"{'HOOK / POLICY / STAGE':<46}{'PKT/S':>10}{'BYTE/S':>10}{'MATCH/S':>10}"[:width]]
    if not r["applied"]:
        lines.append("nothing applied")
    for h in r["hooks"]:
        head = f"{h['name']} {h['type']} {h['interface']}"
        extra = f"  unmatched {_num(h['unmatched_per_s'])}/s"
        if h["errors_per_s"] or h["missed_tail_calls_per_s"]:
            extra += f"  errors {_num(h['errors_per_s'])}/s  missed " \
                     f"{_num(h['missed_tail_calls_per_s'])}/s"
        lines.append(f"{head[:46]:<46}{_num(h['packets_per_s']):>10}{'':>10}"
                     f"{_num(h['matched_per_s']):>10}"[:width])
        lines.append(f"  {extra.strip()}"[:width])
        for p in h["policies"]:
            lines.append(f"  {p['name'][:42]:<44}{_num(p['evaluated_per_s']):>10}"
                         f"{_num(p['matched_bytes_per_s']):>10}{_num(p['matched_per_s']):>10}"
                         [:width])
            for s in p["stages"]:
                name = f"    {s['phase'][:3]} {s['index']} {s['use']}"
                lines.append(f"{name[:46]:<46}{_num(s['packets_per_s']):>10}"
                             f"{_num(s['bytes_per_s']):>10}"[:width])
    return lines


def _reading(pin_root: str) -> tuple[float, dict[str, Any]]:
    from ..runtime.status import StatusReader
    t0 = time.monotonic()
    st = StatusReader(pin_root).status()
    return (t0 + time.monotonic()) / 2, st


def cmd_top(args: argparse.Namespace) -> int:
    import json
    import select
    import shutil
    import sys
    from ..errors import ConfigError
    from ..runtime.rates import rates
    if args.interval <= 0:
        raise ConfigError(f"--interval {args.interval}: must be more than 0 seconds")
    if args.json and not args.once:
        raise ConfigError("--json needs --once (a live view is for a terminal)")
    t0, first = _reading(args.pin_root)
    if args.once:
        time.sleep(args.interval)
        t1, second = _reading(args.pin_root)
        r = rates(first, second, t1 - t0)
        print(json.dumps(r, indent=2) if args.json else "\n".join(render_top(r)))
        return EXIT_OK
    tty = sys.stdin.isatty()
    old = None
    if tty:
        import termios
        import tty as tty_mod
        old = termios.tcgetattr(sys.stdin)
        tty_mod.setcbreak(sys.stdin.fileno())
    try:
        while True:
            deadline = time.monotonic() + args.interval
            while (left := deadline - time.monotonic()) > 0:
                if tty and select.select([sys.stdin], [], [], left)[0]:
                    if sys.stdin.read(1).lower() == "q":
                        return EXIT_OK
                elif not tty:
                    time.sleep(left)
            t1, second = _reading(args.pin_root)
            width = shutil.get_terminal_size((80, 24)).columns
            lines = render_top(rates(first, second, t1 - t0), max(width, 40))
            sys.stdout.write("\x1b[H\x1b[2J" + "\n".join(lines) + "\n")
            sys.stdout.flush()
            t0, first = t1, second
    except KeyboardInterrupt:
        return EXIT_OK
    finally:
        if old is not None:
            import termios
            termios.tcsetattr(sys.stdin, termios.TCSADRAIN, old)
