"""CLI commands about plugins: ``emptcp plugins``, ``emptcp build``, ``emptcp new-plugin``.

``add_parsers(subparsers)`` registers them on the ``emptcp`` argparse parser;
each sets ``func`` to a function ``(args) -> exit code`` (0 ok, 1 runtime or
kernel error, 2 usage/config error).
"""
from __future__ import annotations

import argparse
import os
import re
import sys

from ..errors import EmptcpError

#: the commands this module adds
COMMAND_NAMES = ("plugins", "build", "new-plugin")

__all__ = ["COMMAND_NAMES", "add_parsers", "cmd_plugins", "cmd_build", "cmd_new_plugin", "verifier_excerpt"]

EXIT_OK, EXIT_RUNTIME, EXIT_USAGE = 0, 1, 2


def add_parsers(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser("plugins", help="list installed plugins and their stages")
    p.add_argument("--json", action="store_true", help="machine-readable output")
    p.add_argument("--verify", action="store_true",
                   help="also load every stage's object through the verifier (root)")
    p.set_defaults(func=cmd_plugins)

    p = subparsers.add_parser("build", help="compile a BPF stage and check it with the verifier")
    p.add_argument("source", metavar="FILE.bpf.c")
    p.add_argument("-o", "--output", metavar="OUT.o", help="object path (default: FILE.o)")
    p.add_argument("-I", dest="include", action="append", default=[], help="extra include dir")
    p.add_argument("--no-preflight", action="store_true",
                   help="only compile; do not load into the kernel")
    p.set_defaults(func=cmd_build)

    p = subparsers.add_parser("new-plugin", help="scaffold a plugin distribution")
    p.add_argument("name", help="plugin name (letters, digits, _; e.g. demo)")
    p.add_argument("--dir", default=None, help="target directory (default: ./NAME)")
    p.set_defaults(func=cmd_new_plugin)


# ---- plugins ---------------------------------------------------------------
def _param_text(p) -> str:
    d = "required" if p.required else f"default {p.default!r}"
    rng = f" [{p.min}..{p.max}]" if p.min is not None or p.max is not None else ""
    ch = f" one of {list(p.choices)}" if p.choices else ""
    return f"{p.name}: {p.type}{rng}{ch} ({d})" + (f" - {p.description}" if p.description else "")


def cmd_plugins(args: argparse.Namespace) -> int:
    from ..plugins.manager import get_plugin_manager
    pm = get_plugin_manager()
    infos = pm.plugins()
    verify = getattr(args, "verify", False)
    try:
        # without --verify: the root-free check only (shared maps match this emptcp's)
        problems = pm.load_problems(load=verify)
    except EmptcpError as e:
        print(f"emptcp plugins: {e}", file=sys.stderr)
        return EXIT_RUNTIME
    if getattr(args, "json", False):
        import json
        out = [i.as_dict() for i in infos]
        for d in out:
            for st in d["stages"]:
                st["load_error"] = problems.get(st["name"])
        print(json.dumps(out, indent=2, default=str))
        if not all(i.ok for i in infos):
            return EXIT_USAGE
        return EXIT_RUNTIME if problems else EXIT_OK
    for info in infos:
        head = f"{info.name}  ({info.distribution or '?'} {info.version or ''})".rstrip()
        print(head)
        if info.error:
            print(f"  REFUSED: {info.error.reason}")
            continue
        print(f"  hooks: {', '.join(info.hooks) or '-'}")
        for s in sorted(info.stages, key=lambda s: (s.kind, s.name)):
            print(f"  {s.kind:8} {s.name:20} {'/'.join(s.hooks)}"
                  + (f"  - {s.description}" if s.description else ""))
            if s.name in problems:
                print(f"      CANNOT LOAD: {problems[s.name]}")
            for p in s.params:
                print(f"      {_param_text(p)}")
    bad = [i for i in infos if i.error]
    for i in bad:
        print(f"emptcp: {i.error}", file=sys.stderr)
    if problems:
        print(f"emptcp: {len(problems)} stage(s) cannot be loaded: "
              f"{', '.join(sorted(problems))}; a policy using them fails to apply",
              file=sys.stderr)
    elif not verify:
        print("(objects are checked as files here; `emptcp plugins --verify` (root) also "
              "loads them through the verifier)")
    if bad:
        return EXIT_USAGE
    return EXIT_RUNTIME if problems else EXIT_OK


# ---- build -----------------------------------------------------------------
_SRC_LINE = re.compile(r"^; (.*?) @ (\S+):(\d+)\s*$")
_EMPTCP_HEADER = re.compile(r"^emptcp(_\w+)?\.h$")   # the headers in emptcp.include_dir()


def verifier_excerpt(log: str, tail: int = 25) -> str:
    """The relevant end of a verifier log: the last source lines and the error."""
    lines = [ln for ln in log.rstrip().splitlines()]
    # drop the statistics trailer ("processed N insns ...", "verification time ...")
    while lines and re.match(r"^(processed \d+ insns|verification time|stack depth|"
                             r"-- END PROG LOAD LOG --)", lines[-1]):
        lines.pop()
    body = lines[-tail:]
    srcs = [m for m in (_SRC_LINE.match(ln) for ln in lines) if m]
    out = []
    if srcs:
        m = srcs[-1]
        out.append(f"at {os.path.basename(m.group(2))}:{m.group(3)}: {m.group(1).strip()}")
        if _EMPTCP_HEADER.match(os.path.basename(m.group(2))):
            # inlined emptcp helper: name the last line of the author's own code
            # the verifier went through (BTF line info has no inline call sites)
            mine = [s for s in srcs if not _EMPTCP_HEADER.match(os.path.basename(s.group(2)))]
            if mine:
                c = mine[-1]
                out.append(f"last line of your code before it: {os.path.basename(c.group(2))}:"
                           f"{c.group(3)}: {c.group(1).strip()}")
    out += body
    return "\n".join(out)


def cmd_build(args: argparse.Namespace) -> int:
    from .. import include_dir
    from ..build.compile import BuildError, compile_bpf, object_name
    src = args.source
    if not os.path.isfile(src):
        print(f"emptcp build: {src}: no such file", file=sys.stderr)
        return EXIT_USAGE
    out = args.output or os.path.join(os.path.dirname(src) or ".", object_name(src) + ".o")
    try:
        compile_bpf(src, out, [include_dir(), os.path.dirname(os.path.abspath(src)),
                               *args.include])
    except BuildError as e:
        print(f"emptcp build: {e}", file=sys.stderr)
        return EXIT_USAGE
    print(f"compiled {out}")
    if args.no_preflight:
        return EXIT_OK
    return preflight(out, src)


def preflight(obj_path: str, src: str | None = None) -> int:
    """Load every program of ``obj_path`` into the kernel (not attached) and unload it."""
    from ..errors import MissingPrivilegeError, VerifierError, EmptcpError
    from ..bpf.objects import ObjectSpec
    try:
        with ObjectSpec(obj_path) as spec:
            names = list(spec.programs)
            obj = spec.load()
        obj.close()
    except VerifierError as e:
        where = f" ({src})" if src else ""
        print(f"emptcp build: verifier rejected program '{e.program}'{where}:", file=sys.stderr)
        print(verifier_excerpt(e.log), file=sys.stderr)
        return EXIT_RUNTIME
    except MissingPrivilegeError as e:
        print(f"emptcp build: preflight needs privileges: {e} (use --no-preflight to only "
              "compile)", file=sys.stderr)
        return EXIT_RUNTIME
    except EmptcpError as e:
        print(f"emptcp build: preflight failed: {e}", file=sys.stderr)
        return EXIT_RUNTIME
    print(f"verifier accepted {len(names)} program(s): {', '.join(names)}")
    return EXIT_OK


# ---- new-plugin ------------------------------------------------------------
_NAME = re.compile(r"^[a-z][a-z0-9_]{0,30}$")


def template_dir() -> str:
    return os.path.join(os.path.dirname(os.path.abspath(__file__)), "templates", "plugin")


def render(name: str, dest: str) -> list[str]:
    """Copy the template tree to ``dest``; replace NAME in paths and {{name}} in files."""
    subs = {"{{name}}": name, "{{pkg}}": f"emptcp_{name}", "{{dist}}": f"emptcp-{name}"}
    written = []
    root = template_dir()
    for dirpath, _dirs, files in os.walk(root):
        rel = os.path.relpath(dirpath, root)
        for f in files:
            if not f.endswith(".tmpl"):
                continue
            relpath = os.path.normpath(os.path.join(rel, f[:-5]))
            relpath = relpath.replace("PKG", f"emptcp_{name}").replace("NAME", name)
            with open(os.path.join(dirpath, f)) as fh:
                text = fh.read()
            for k, v in subs.items():
                text = text.replace(k, v)
            target = os.path.join(dest, relpath)
            os.makedirs(os.path.dirname(target), exist_ok=True)
            with open(target, "w") as fh:
                fh.write(text)
            written.append(target)
    return sorted(written)


def cmd_new_plugin(args: argparse.Namespace) -> int:
    name = args.name
    if not _NAME.match(name):
        print(f"emptcp new-plugin: {name!r} is not a valid name (lower-case letters, digits "
              "and _, starting with a letter, at most 31 characters)", file=sys.stderr)
        return EXIT_USAGE
    dest = args.dir or name
    if os.path.exists(dest) and os.listdir(dest):
        print(f"emptcp new-plugin: {dest} exists and is not empty", file=sys.stderr)
        return EXIT_USAGE
    files = render(name, dest)
    print(f"created plugin '{name}' (distribution emptcp-{name}) in {dest}:")
    for f in files:
        print(f"  {f}")
    print(f"next: cd {os.path.relpath(dest)} && pip install . && python -m pytest tests")
    return EXIT_OK

