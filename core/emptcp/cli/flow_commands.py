"""``emptcp flow add|del|list``: run-time entries of an applied policy's selector.

An entry is one line of whitespace- (or comma-) separated fields, by stage:

    tcp4tuple   LOCAL_ADDR LOCAL_PORT REMOTE_ADDR REMOTE_PORT
    tcp2tuple   LOCAL_PORT REMOTE_PORT     or     LOCAL_ADDR REMOTE_ADDR
    service     PORT  or  LO-HI

or a JSON object with the parameter names ({"local_addr": ..., ...}). Entries come
from the command line, ``--file FILE`` or ``--file -`` (stdin), and are written in
batches (:class:`emptcp.runtime.flows.Flows`).
"""
from __future__ import annotations

import argparse
import os
import sys

from .. import DEFAULT_PIN_ROOT

TYPE_CHECKING = False  # as typing.TYPE_CHECKING, without importing typing
if TYPE_CHECKING:
    from typing import Any, Iterable, Iterator

__all__ = ["COMMAND_NAMES", "add_parsers", "cmd_flow"]

COMMAND_NAMES = ("flow",)
BATCH = 65536

EPILOG = """\
entries (one per argument or line; '#' starts a comment):
  tcp4tuple   LOCAL_ADDR LOCAL_PORT REMOTE_ADDR REMOTE_PORT
  tcp2tuple   LOCAL_PORT REMOTE_PORT   or   LOCAL_ADDR REMOTE_ADDR
  service     PORT   or   LO-HI
  or a JSON object: {"local_addr": "10.0.0.1", "local_port": 80, ...}

Entries go into the running generation at once (no reload); an apply that keeps
the policy (same name, same selector position) keeps them.

examples:
  emptcp flow add conns 10.0.0.1,7077,10.0.1.2,40000
  emptcp flow add conns --file flows.txt          (or --file - to read stdin)
  emptcp flow del conns 10.0.0.1,7077,10.0.1.2,40000
  emptcp flow list conns --json
"""


def add_parsers(sub: Any) -> None:
    p = sub.add_parser("flow", help="add, remove or list run-time entries of an applied "
                       "policy's tcp4tuple / tcp2tuple / service selector",
                       formatter_class=argparse.RawDescriptionHelpFormatter, epilog=EPILOG)
    p.add_argument("action", choices=("add", "del", "list"))
    p.add_argument("policy", help="the policy's name (as in the applied configuration)")
    p.add_argument("entries", nargs="*", help="entries (see below)")
    p.add_argument("--selector", type=int, default=None,
                   help="selector index in the policy (default: its only tcp4tuple, "
                        "tcp2tuple or service selector)")
    p.add_argument("--file", help="read entries from FILE, one per line ('-': stdin)")
    p.add_argument("--json", action="store_true", help="machine-readable output")
    p.add_argument("--pin-root", default=os.environ.get("EMPTCP_PIN_ROOT", DEFAULT_PIN_ROOT),
                   help="bpffs directory holding emptcp's state (env EMPTCP_PIN_ROOT)")
    p.set_defaults(func=cmd_flow)


def _lines(args: argparse.Namespace) -> Iterator[tuple[str, str]]:
    """(where, text) of every entry: arguments, then the file's lines."""
    for i, text in enumerate(args.entries):
        yield f"argument {i + 1}", text
    if not args.file:
        return
    name = "<stdin>" if args.file == "-" else args.file
    stream = sys.stdin if args.file == "-" else open(args.file, encoding="utf-8")
    try:
        for n, line in enumerate(stream, 1):
            line = line.split("#", 1)[0].strip()
            if line:
                yield f"{name}:{n}", line
    finally:
        if stream is not sys.stdin:
            stream.close()


def _parsed(stage: str, lines: Iterable[tuple[str, str]]) -> Iterator[dict[str, Any]]:
    from ..chain.sets import parse_entry
    from ..errors import ConfigError
    for where, text in lines:
        try:
            yield parse_entry(stage, text)
        except ValueError as e:
            raise ConfigError(f"{where}: {e}") from None


def _batches(items: Iterable[Any], n: int) -> Iterator[list[Any]]:
    batch: list[Any] = []
    for x in items:
        batch.append(x)
        if len(batch) >= n:
            yield batch
            batch = []
    if batch:
        yield batch


def cmd_flow(args: argparse.Namespace) -> int:
    import json
    from ..chain.sets import format_entry
    from ..errors import ConfigError
    from ..runtime.flows import Flows
    flows = Flows(args.pin_root)
    if args.action == "list":
        if args.entries or args.file:
            raise ConfigError("flow list takes no entries")
        entries = flows.list(args.policy, args.selector)
        if args.json:
            print(json.dumps(entries, indent=2))
        else:
            for e in entries:
                print(format_entry(e))
        return 0
    if not args.entries and not args.file:
        raise ConfigError(f"flow {args.action}: give entries as arguments or with --file")
    stage = flows.stage_of(args.policy, args.selector)
    total = 0
    change = flows.add if args.action == "add" else flows.delete
    # every entry parsed before the first is written: bad input changes nothing
    for batch in _batches(list(_parsed(stage, _lines(args))), BATCH):
        total += change(args.policy, batch, args.selector)
    if args.json:
        print(json.dumps({"policy": args.policy, "action": args.action, "changed": total}))
    else:
        print(f"{args.policy}: {total} entr{'y' if total == 1 else 'ies'} "
              f"{'added' if args.action == 'add' else 'removed'}")
    return 0
