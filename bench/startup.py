"""Start-up of the ``emptcp`` command beside bpftool and the bare interpreter (same run).

Every figure is the wall time of one fresh process (fork/exec included), median over
rounds; each round runs every command once, interleaved, so load on the machine hits
all of them alike.

* ``startup.help``: ``emptcp --help`` (argparse and the commands' texts, no kernel).
* ``startup.status.empty``: ``emptcp status`` on a pin root where nothing is applied
  (it still reads the namespace's MPTCP connections, with ``ss``).
* ``startup.status`` / ``startup.status.json``: ``emptcp status`` / ``--json`` on an
  applied pin root (one XDP hook, one ``service`` -> ``count`` policy): the generation
  description, hook and stage counters, the attachment, the MPTCP connections.

Baselines, by row suffix:

* ``:python``: ``python -c pass`` with emptcp's own interpreter -- the floor no Python
  command goes under; emptcp's figure minus this one is what emptcp adds.
* ``:bpftool``: what a shell user runs to see the same kind of state: ``bpftool help``
  for ``--help``; ``bpftool prog show`` + ``bpftool map show`` (two processes, every
  program and map of the machine) for ``status``.
* ``:batchfile`` (applied status only): one ``bpftool -j batch file`` process reading
  exactly the entries ``status`` reads (the generation description map, the hook's
  counters, each stage's counters).

The status commands and their baselines all run in the benchmark's network namespace
through ``nsenter --net=`` (where the hook is; ``ss`` sees only that namespace).
"""
from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
from typing import Callable

from ._util import bpftool_path, median, timed
from .apply import _Ns, _emptcp_apply, _emptcp_bin, _pin_root, _status, config_text
from .registry import Context, Result, benchmark


def _run(argv: list[str]) -> subprocess.CompletedProcess:
    p = subprocess.run(argv, capture_output=True, text=True)
    if p.returncode != 0:
        raise RuntimeError(f"{' '.join(argv)}: exit {p.returncode}: {p.stderr.strip()}")
    return p


def _batch_file(path: str, root: str, st: dict) -> None:
    """The bpftool batch file reading what ``status`` reads on ``st``'s pin root."""
    hook = st["hooks"][0]
    lines = [f"map dump pinned {root}/gen{st['generation']}",
             f"map lookup pinned {root}/maps/emptcp_hook_stats key "
             + " ".join(str(b) for b in hook["hook_id"].to_bytes(4, "little"))]
    n_stages = sum(len(p["selectors"]) + len(p["actions"]) for p in hook["policies"])
    for i in range(n_stages):   # the stage counters status reads (same count of lookups)
        lines.append(f"map lookup pinned {root}/maps/emptcp_stage_stats key "
                     + " ".join(str(b) for b in i.to_bytes(4, "little")))
    with open(path, "w") as f:
        f.write("\n".join(lines) + "\n")


@benchmark("startup")
def startup(ctx: Context) -> list[Result]:
    rounds = ctx.pick(15, 3)
    ns, root, empty = _Ns(), _pin_root(), _pin_root()
    emptcp, bpftool = _emptcp_bin(), bpftool_path()
    try:
        with tempfile.NamedTemporaryFile("w", suffix=".toml", delete=False) as f:
            f.write(config_text(1, 8000))
        _emptcp_apply(ns, f.name, root)
        os.unlink(f.name)
        st = _status(ns, root)
        gen = st["generation"]
        batch = os.path.join(ctx.tmpdir, "status.batch")
        _batch_file(batch, root, st)

        def status_json() -> None:
            if json.loads(_run(ns.argv(emptcp, "status", "--json", "--pin-root",
                                       root)).stdout)["generation"] != gen:
                raise AssertionError("emptcp status --json read another generation")

        def status_text() -> None:
            if f"generation {gen}" not in _run(ns.argv(emptcp, "status", "--pin-root",
                                                       root)).stdout:
                raise AssertionError("emptcp status did not show the applied generation")

        def status_empty() -> None:
            if "nothing applied" not in _run(ns.argv(emptcp, "status", "--pin-root",
                                                     empty)).stdout:
                raise AssertionError("emptcp status found something under an empty root")

        def help_() -> None:
            if "usage: emptcp" not in _run([emptcp, "--help"]).stdout:
                raise AssertionError("emptcp --help printed no usage")

        def bpftool_show() -> None:   # the programs and maps, as a shell user lists them
            _run(ns.argv(bpftool, "prog", "show"))
            _run(ns.argv(bpftool, "map", "show"))

        runs: dict[str, Callable[[], object]] = {
            "help": help_,
            "status.empty": status_empty,
            "status": status_text,
            "status.json": status_json,
            "python": lambda: _run([sys.executable, "-c", "pass"]),
            "python.ns": lambda: _run(ns.argv(sys.executable, "-c", "pass")),
            "bpftool.help": lambda: subprocess.run([bpftool, "help"], capture_output=True),
            "bpftool.show": bpftool_show,
            "bpftool.batch": lambda: _run(ns.argv(bpftool, "-j", "batch", "file", batch)),
        }
        secs: dict[str, list[float]] = {name: [] for name in runs}
        for _ in range(rounds):
            for name, fn in runs.items():
                secs[name].append(timed(fn)[0])
    finally:
        subprocess.run(ns.argv(emptcp, "detach", "--all", "--pin-root", root),
                       capture_output=True)
        ns.close()
    ms = {name: median(v) * 1e3 for name, v in secs.items()}
    python = "python -c pass (emptcp's interpreter)"
    show = "bpftool prog show + bpftool map show (2 processes)"
    batchfile = "bpftool batch file: the generation description + hook and stage counters"
    what = {"help": "one `emptcp --help` process",
            "status.empty": "one `emptcp status` process, nothing applied under the pin root",
            "status": "one `emptcp status` process on an applied pin root (1 XDP hook, "
                      "1 policy)",
            "status.json": "one `emptcp status --json` process on the same pin root"}
    out = []
    for name, text in what.items():
        py = ms["python" if name == "help" else "python.ns"]
        desc = f"{text}; {ms[name] - py:.1f} ms more than the bare interpreter"
        if name == "help":
            out.append(Result("startup.help:bpftool", ms[name], "ms/op", "bpftool help",
                              ms["bpftool.help"], description=desc))
        else:
            out.append(Result(f"startup.{name}:bpftool", ms[name], "ms/op", show,
                              ms["bpftool.show"], description=desc))
            if name != "status.empty":
                out.append(Result(f"startup.{name}:batchfile", ms[name], "ms/op", batchfile,
                                  ms["bpftool.batch"], description=desc))
        out.append(Result(f"startup.{name}:python", ms[name], "ms/op", python, py,
                          description=desc))
    return out
