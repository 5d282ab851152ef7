"""The package's shape: layers without import cycles, every module importable on its own,
no silently swallowed imports. Pure Python: runs without root."""
from __future__ import annotations

import ast
import os
import subprocess
import sys

import emptcp

PKG_ROOT = os.path.dirname(emptcp.__file__)


def modules() -> dict[str, str]:
    """dotted name -> file of every module of the installed emptcp (templates excluded)."""
    out = {}
    for dirpath, dirs, files in os.walk(PKG_ROOT):
        dirs[:] = [d for d in dirs if d not in ("templates", "__pycache__", "data")]
        for f in files:
            if f.endswith(".py"):
                rel = os.path.relpath(os.path.join(dirpath, f), os.path.dirname(PKG_ROOT))
                out[rel[:-3].replace(os.sep, ".").removesuffix(".__init__")] = \
                    os.path.join(dirpath, f)
    return out


def import_edges(mods: dict[str, str]) -> dict[str, set[str]]:
    """module -> modules it imports (any import, at any depth; package __init__s ignored)."""
    pkgs = {m for m, p in mods.items() if p.endswith("__init__.py")}
    edges: dict[str, set[str]] = {m: set() for m in mods}
    for m, path in mods.items():
        with open(path) as f:
            tree = ast.parse(f.read())
        base_parts = m.split(".") if m in pkgs else m.split(".")[:-1]
        for node in ast.walk(tree):
            targets: list[str] = []
            if isinstance(node, ast.Import):
                targets = [a.name for a in node.names]
            elif isinstance(node, ast.ImportFrom):
                if node.level:
                    parts = base_parts[:len(base_parts) - node.level + 1]
                    base = ".".join(parts + ([node.module] if node.module else []))
                else:
                    base = node.module or ""
                targets = [base] + [f"{base}.{a.name}" for a in node.names]
            edges[m] |= {t for t in targets if t in mods and t not in pkgs and t != m}
    return edges


def cycles(edges: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components with more than one module (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on: set[str] = set()
    found: list[list[str]] = []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        on.add(v)
        for w in sorted(edges[v]):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            comp = []
            while True:
                w = stack.pop()
                on.discard(w)
                comp.append(w)
                if w == v:
                    break
            if len(comp) > 1:
                found.append(sorted(comp))

    sys.setrecursionlimit(max(sys.getrecursionlimit(), 10000))
    for v in sorted(edges):
        if v not in index:
            visit(v)
    return found


def test_cycle_finder_finds_a_cycle():
    assert cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": set()}) == [["a", "b", "c"]]
    assert cycles({"a": {"b"}, "b": set()}) == []


def test_no_import_cycles():
    assert cycles(import_edges(modules())) == []


def test_layers_do_not_reach_up():
    """chain (model, config, compiler) is pure: no kernel, no runtime; bpf is the bottom
    layer; nothing the product ships imports the test rig."""
    edges = import_edges(modules())
    rules = {"emptcp.chain.": ("emptcp.bpf.", "emptcp.runtime.", "emptcp.cli.", "emptcp.rig."),
             "emptcp.bpf.": ("emptcp.chain.", "emptcp.runtime.", "emptcp.plugins.", "emptcp.cli.",
                             "emptcp.rig."),
             "emptcp.runtime.": ("emptcp.cli.", "emptcp.rig."),
             "emptcp.mptcp.": ("emptcp.rig.", "emptcp.cli.")}
    bad = [f"{m} imports {t}" for m, ts in edges.items() for t in ts
           for layer, banned in rules.items() if m.startswith(layer) and t.startswith(banned)]
    assert not bad, "\n".join(bad)


def test_every_module_imports_on_its_own():
    """Each module in a fresh interpreter (an import that only works after another
    module happened to be imported first is a hidden dependency)."""
    names = [m for m in modules() if not m.endswith("__main__")]
    code = ("import importlib, sys\n"
            "failed = []\n"
            "for name in sys.argv[1:]:\n"
            "    import subprocess\n"
            "    r = subprocess.run([sys.executable, '-c', f'import {name}'], capture_output=True,"
            " text=True)\n"
            "    if r.returncode: failed.append(f'{name}: {r.stderr.strip().splitlines()[-1]}')\n"
            "print('\\n'.join(failed))\n")
    r = subprocess.run([sys.executable, "-c", code, *names], capture_output=True, text=True,
                       cwd="/")
    assert r.returncode == 0, r.stderr
    assert r.stdout.strip() == "", r.stdout


def test_no_silent_import_fallbacks():
    """A broken module must fail loudly, not remove a feature ('except ImportError: pass')."""
    offenders = []
    for m, path in modules().items():
        with open(path) as f:
            tree = ast.parse(f.read())
        for node in ast.walk(tree):
            if isinstance(node, ast.ExceptHandler) and node.type is not None:
                names = {n.id for n in ast.walk(node.type) if isinstance(n, ast.Name)}
                if names & {"ImportError", "ModuleNotFoundError"} and \
                        all(isinstance(b, ast.Pass) for b in node.body):
                    offenders.append(f"{m}:{node.lineno}")
    assert not offenders, offenders


def test_libbpf_error_texts_match_libbpf():
    """emptcp.errors words libbpf's own error codes without importing the bindings;
    the table must say what libbpf_strerror says."""
    from emptcp.bpf import libbpf
    from emptcp.errors import _LIBBPF_ERRORS
    for code, text in _LIBBPF_ERRORS.items():
        assert libbpf.strerror(code) == text, code
    assert set(_LIBBPF_ERRORS) == {c for c in range(4000, 4100)
                                   if not libbpf.strerror(c).startswith(("Unknown", "(null)"))}


def test_shipped_plugins_do_not_import_the_test_rig():
    """emptcp.rig is for tests; a plugin that imports it at run time breaks on hosts
    (and did: emptcp-mptcp's subflow promotion imported emptcp.rig.stats)."""
    repo = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    offenders = []
    for base in ("plugins", os.path.join("examples", "plugins")):
        for dirpath, dirs, files in os.walk(os.path.join(repo, base)):
            dirs[:] = [d for d in dirs if d not in ("build", "tests", "__pycache__")
                       and not d.endswith(".egg-info")]
            for f in files:
                if f.endswith(".py"):
                    path = os.path.join(dirpath, f)
                    with open(path) as fh:
                        tree = ast.parse(fh.read())
                    for node in ast.walk(tree):
                        names = [a.name for a in node.names] if isinstance(node, ast.Import) \
                            else [node.module or ""] if isinstance(node, ast.ImportFrom) else []
                        offenders += [f"{os.path.relpath(path, repo)}:{node.lineno} {n}"
                                      for n in names if n == "emptcp.rig" or
                                      n.startswith("emptcp.rig.")]
    assert not offenders, offenders
