"""A table of bad configurations: each one exits 2 with ONE stderr line naming the file,
the line and the key; the configuration applied before keeps running unchanged
(same generation, same description, same links) and no new pin appears."""
from __future__ import annotations

import json
import os
from typing import Any

import pytest

from ..chain.cases import CASES, GOOD
from .conftest import Host

pytestmark = pytest.mark.slow


def _stable(st: dict[str, Any]) -> dict[str, Any]:
    """status --json without counters (traffic may move them)."""
    st = json.loads(json.dumps(st))
    for h in st.get("hooks", []):
        h.pop("counters", None)
        for p in h["policies"]:
            for k in ("selectors", "actions"):
                for s in p[k]:
                    s.pop("counters", None)
    return st


def test_bad_configurations(host: Host, tmp_path) -> None:
    good = tmp_path / "good.toml"
    good.write_text(GOOD)
    host.apply(str(good))
    before = _stable(host.status())
    tree = host.tree()
    assert before["generation"] == 0
    failures = []
    for cid, text, key, line, word in CASES:
        path = tmp_path / f"{cid}.toml"
        path.write_text(text)
        p = host.cli("apply", str(path))
        err = p.stderr.strip()
        problems = []
        if p.returncode != 2:
            problems.append(f"exit {p.returncode}, not 2")
        if len(err.splitlines()) != 1:
            problems.append(f"{len(err.splitlines())} stderr lines, not 1")
        where = f"{path}:{line}:" if line else f"{path}"
        if where not in err:
            problems.append(f"does not name {where}")
        if key and key not in err:
            problems.append(f"does not name the key {key!r}")
        if word.lower() not in err.lower():
            problems.append(f"does not say {word!r}")
        if "Traceback" in p.stderr:
            problems.append("traceback")
        if p.stdout.strip():
            problems.append(f"stdout: {p.stdout.strip()[:100]}")
        if host.tree() != tree:
            problems.append(f"pins changed: {sorted(set(host.tree()) ^ set(tree))}")
        if problems:
            failures.append(f"{cid}: {'; '.join(problems)}\n    stderr: {err}")
    after = _stable(host.status())
    assert after == before
    assert host.tree() == tree
    assert not failures, "\n".join(failures)
    # the old configuration still runs: counters still move
    assert host.cli("plan", str(good)).returncode == 0
    assert "no changes" in host.ok("apply", str(good)).stdout
