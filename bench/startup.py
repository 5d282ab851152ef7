"""Start-up of the ``emptcp`` command beside bpftool doing the same read (same run).

* ``startup.status``: ``emptcp status --json`` on an applied pin root (one XDP hook, one
  ``service`` -> ``count`` policy, in a namespace of its own): Python start-up, imports,
  reading the generation description and the counters. Baseline: one ``bpftool batch
  file`` process reading the same entries (the generation description map, the hook's
  counters and each stage's counters), i.e. what a shell user runs for the same facts.
* ``startup.help``: ``emptcp --help`` beside ``bpftool help``: pure start-up, no kernel.

Both are wall time of one process, median over rounds; the figures include fork/exec.
"""
from __future__ import annotations

import json
import os
import subprocess
import tempfile

from ._util import bpftool_path, median, timed
from .apply import _Ns, _emptcp_apply, _emptcp_bin, _pin_root, _status, config_text
from .registry import Context, Result, benchmark


def _run(argv: list[str]) -> subprocess.CompletedProcess:
    p = subprocess.run(argv, capture_output=True, text=True)
    if p.returncode != 0:
        raise RuntimeError(f"{' '.join(argv)}: exit {p.returncode}: {p.stderr.strip()}")
    return p


@benchmark("startup")
def startup(ctx: Context) -> list[Result]:
    rounds = ctx.pick(15, 3)
    ns, root = _Ns(), _pin_root()
    try:
        with tempfile.NamedTemporaryFile("w", suffix=".toml", delete=False) as f:
            f.write(config_text(1, 8000))
        _emptcp_apply(ns, f.name, root)
        st = _status(ns, root)
        gen, hook = st["generation"], st["hooks"][0]
        lines = [f"map dump pinned {root}/gen{gen}",
                 f"map lookup pinned {root}/maps/emptcp_hook_stats key "
                 + " ".join(str(b) for b in hook["hook_id"].to_bytes(4, "little"))]
        n_stages = sum(len(p["selectors"]) + len(p["actions"]) for p in hook["policies"])
        for i in range(n_stages):   # the stage counters status reads (same count of lookups)
            lines.append(f"map lookup pinned {root}/maps/emptcp_stage_stats key "
                         + " ".join(str(b) for b in i.to_bytes(4, "little")))
        batch = os.path.join(ctx.tmpdir, "status.batch")
        with open(batch, "w") as b:
            b.write("\n".join(lines) + "\n")
        ours_status, base_status, ours_help, base_help = [], [], [], []
        for _ in range(rounds):
            secs, p = timed(lambda: _run(ns.argv(_emptcp_bin(), "status", "--json",
                                                 "--pin-root", root)))
            if json.loads(p.stdout)["generation"] != gen:
                raise AssertionError("emptcp status read another generation")
            ours_status.append(secs)
            base_status.append(timed(lambda: _run([bpftool_path(), "-j", "batch", "file",
                                                   batch]))[0])
            ours_help.append(timed(lambda: _run([_emptcp_bin(), "--help"]))[0])
            base_help.append(timed(lambda: subprocess.run([bpftool_path(), "help"],
                                                          capture_output=True))[0])
    finally:
        subprocess.run(ns.argv(_emptcp_bin(), "detach", "--all", "--pin-root", root),
                       capture_output=True)
        ns.close()
    return [
        Result("startup.status", median(ours_status) * 1e3, "ms/op",
               "bpftool batch file: the generation description + hook and stage counters",
               median(base_status) * 1e3,
               description="one `emptcp status --json` process on an applied pin root"),
        Result("startup.help", median(ours_help) * 1e3, "ms/op", "bpftool help",
               median(base_help) * 1e3, description="one `emptcp --help` process"),
    ]
