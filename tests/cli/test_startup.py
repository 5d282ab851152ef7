"""``emptcp --help`` and ``emptcp status`` stay cheap to start (issue 12, start-up): they
import neither the plugin machinery nor the loader, the compiler or the configuration
layer, and ``--help`` not even the bindings.

No timing here (bench/startup.py measures it): a fresh interpreter runs the CLI's
``main`` and reports the modules it then holds, minus those a bare interpreter of the
same environment holds (``site`` and ``.pth`` files are not emptcp's doing).
"""
from __future__ import annotations

import json
import os
import subprocess
import sys

from .conftest import EXAMPLES, Host

#: runs ``main(argv)`` with its output captured; prints {"code", "out", "modules"}
#: (sys.modules is read before json is imported for the report)
PROBE = r"""
import io, sys
real_out, real_err = sys.stdout, sys.stderr
sys.stdout, sys.stderr = io.StringIO(), io.StringIO()
try:
    from emptcp.cli.main import main
    try:
        code = main(sys.argv[1:])
    except SystemExit as e:
        code = e.code
finally:
    out, err = sys.stdout.getvalue(), sys.stderr.getvalue()
    sys.stdout, sys.stderr = real_out, real_err
modules = sorted(sys.modules)
import json
print(json.dumps({"code": code, "out": out, "err": err, "modules": modules}))
"""

#: what no start-up path loads: plugin discovery, the object loader and the compiler
#: (cffi is the binding's *compiler* front end; the compiled module needs only
#: _cffi_backend), the configuration layer, and the test/packet libraries
NEVER = ("pluggy", "importlib.metadata", "emptcp.plugins", "emptcp.build", "cffi",
         "pycparser", "emptcp.chain.config", "emptcp.chain.compiler", "emptcp.chain.model",
         "emptcp.runtime.engine", "emptcp.runtime.generation", "emptcp.runtime.instances",
         "emptcp.runtime.features", "emptcp.bpf.objects", "emptcp.bpf.pinning", "tomllib",
         "scapy", "hypothesis", "pyroute2", "prometheus_client", "emptcp.rig")
#: and what ``--help`` (argparse and the text of the commands) needs none of: the
#: bindings, the ABI mirror, the runtime, nor the stdlib modules only commands use
NOT_FOR_HELP = NEVER + ("emptcp.bpf", "_cffi_backend", "emptcp.abi", "emptcp.chain",
                        "emptcp.runtime", "emptcp.mptcp", "emptcp.netns", "dataclasses",
                        "typing", "logging", "json", "subprocess", "ctypes", "socket")


def _modules(argv: list[str], ns: str | None = None) -> dict:
    prefix = ["nsenter", f"--net=/var/run/netns/{ns}", "--"] if ns else []
    p = subprocess.run(prefix + [sys.executable, "-c", PROBE, *argv], capture_output=True,
                       text=True, timeout=60)
    assert p.returncode == 0, p.stderr
    return json.loads(p.stdout)


def _bare() -> set[str]:
    """Modules of an interpreter that ran nothing (site, .pth files)."""
    p = subprocess.run([sys.executable, "-c", "import sys; print(' '.join(sys.modules))"],
                       capture_output=True, text=True, timeout=60, check=True)
    return set(p.stdout.split())


def loaded(modules: list[str], banned: tuple[str, ...]) -> list[str]:
    """The modules (or submodules) of ``banned`` in ``modules`` that a bare interpreter
    does not load."""
    bare = _bare()
    return [m for m in modules if m not in bare
            and any(m == b or m.startswith(b + ".") for b in banned)]


def test_loaded_finds_banned_modules_and_their_submodules():
    mods = ["json", "json.decoder", "jsonschema", "emptcp.bpf.maps", "emptcp.bpfbuild", "sys"]
    assert loaded(mods, ("json", "emptcp.bpf")) == ["json", "json.decoder", "emptcp.bpf.maps"]


def test_help_imports_argparse_and_the_command_texts_only():
    r = _modules(["--help"])
    assert r["code"] == 0 and "usage: emptcp" in r["out"] and "status" in r["out"], r
    assert loaded(r["modules"], NOT_FOR_HELP) == []
    r = _modules([])   # no command: the same help, exit 2
    assert r["code"] == 2 and "usage: emptcp" in r["out"], r
    assert loaded(r["modules"], NOT_FOR_HELP) == []


def test_status_help_and_a_usage_error_import_no_more_than_help():
    r = _modules(["status", "--help"])
    assert r["code"] == 0 and "--pin-root" in r["out"], r
    assert loaded(r["modules"], NOT_FOR_HELP) == []
    r = _modules(["status", "--no-such-option"])
    assert r["code"] == 2 and "unrecognized arguments" in r["err"], r
    assert loaded(r["modules"], NOT_FOR_HELP) == []


def test_status_outside_bpffs_reads_without_the_apply_machinery(tmp_path):
    """Whatever it finds (here: a pin root that is not on bpffs, an error), ``status``
    has imported what it reads with -- and nothing of the apply path."""
    for argv in (["status"], ["status", "--json"]):
        r = _modules(argv + ["--pin-root", str(tmp_path / "pins")])
        assert r["code"] == 1 and "not on a BPF filesystem" in r["err"], r
        assert loaded(r["modules"], NEVER) == []
        assert "emptcp.runtime.status" in r["modules"]   # it got as far as reading


def test_status_of_an_applied_configuration_reads_without_the_apply_machinery(host: Host):
    """XDP and TC hooks applied: the text and the JSON status read the generation, the
    counters and the attachments (links, TCX order) with the bindings only."""
    host.apply(os.path.join(EXAMPLES, "two-hooks.toml"))
    for argv in (["status"], ["status", "--json"]):
        r = _modules(argv + ["--pin-root", host.pin_root], ns=host.ns)
        assert r["code"] == 0, r
        if argv[-1] == "--json":
            st = json.loads(r["out"])
            assert st["applied"] and {h["name"] for h in st["hooks"]} == \
                {"wan", "lan-in", "wan-out"} and all(h["attached"] for h in st["hooks"])
        else:
            assert "hook wan-out: tc-egress (position last) on veth0" in r["out"], r["out"]
        assert loaded(r["modules"], NEVER) == []
