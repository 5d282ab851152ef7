"""Apply is transactional and serialised: SIGKILL at random points of ``emptcp apply``
leaves the old or the new configuration, complete; two concurrent applies serialise;
re-applying the same file changes nothing."""
from __future__ import annotations

import os
import random
import signal
import subprocess
import time
from typing import Any

import pytest

from .conftest import Host

pytestmark = pytest.mark.slow

ONE = """\
[hooks.in]
interface = "veth0"
type = "xdp"

[[policy]]
name = "count-all"
hook = "in"
actions = [ { use = "count" } ]
"""

THREE = """\
[hooks.wan]
interface = "veth0"
type = "xdp"

[hooks.lan-in]
interface = "veth1"
type = "tc-ingress"

[hooks.wan-out]
interface = "veth0"
type = "tc-egress"

[[policy]]
name = "web"
hook = "wan"
selectors = [ { use = "service", ports = [8080] }, { use = "service", ports = [9090], op = "or" } ]
actions = [ { use = "count" }, { use = "set_recv_win", window = 2048 } ]

[[policy]]
name = "rest"
hook = "wan"
priority = 5
actions = [ { use = "count" } ]

[[policy]]
name = "lan"
hook = "lan-in"
selectors = [ { use = "ip_pair", remote_addr = "10.77.1.0/24" } ]
actions = [ { use = "count" } ]

[[policy]]
name = "out"
hook = "wan-out"
actions = [ { use = "count" }, { use = "pass" } ]
"""


def _expected_attachments(st: dict[str, Any]) -> dict[str, Any]:
    xdp = sorted(h["interface"] for h in st["hooks"] if h["type"] == "xdp")
    tc = {f"{h['interface']}/{h['type']}": 1 for h in st["hooks"] if h["type"] != "xdp"}
    return {"xdp": xdp, "tc": tc}


def _actual_attachments(host: Host) -> dict[str, Any]:
    """XDP interfaces and TC attachments per hook (TCX links or cls_bpf filters, all made
    the way this run attaches: see conftest.tc_mode), as the kernel lists them."""
    att = host.attachments()
    return {"xdp": sorted(x["devname"] for x in att["xdp"]), "tc": host.tc_attachments(att)}


def assert_complete(host: Host, digests: dict[str, str], where: str) -> dict[str, Any]:
    """status shows one of the known configurations, committed and fully attached."""
    st = host.status()
    assert st["applied"], f"{where}: nothing applied"
    assert st["digest"] in digests.values(), f"{where}: unknown digest"
    for h in st["hooks"]:
        assert h["attached"], f"{where}: hook {h['name']} not attached"
        assert h["attached"]["ifindex"] == host.ifindex(h["interface"]), where
    return st


@pytest.fixture
def configs(tmp_path) -> dict[str, str]:
    out = {}
    for name, text in (("one", ONE), ("three", THREE)):
        p = tmp_path / f"{name}.toml"
        p.write_text(text)
        out[name] = str(p)
    return out


def _learn_digests(host: Host, configs: dict[str, str],
                   durations: dict[str, float] | None = None) -> dict[str, str]:
    digests = {}
    for name in ("one", "three"):
        t0 = time.monotonic()
        host.apply(configs[name])
        if durations is not None:
            durations[name] = time.monotonic() - t0
        digests[name] = host.status()["digest"]
    host.detach_all()
    assert not os.path.exists(host.pin_root)
    return digests


def _seed() -> int:
    """EMPTCP_TEST_SEED when set (to replay a schedule), else a fresh random seed."""
    env = os.environ.get("EMPTCP_TEST_SEED", "").strip()
    return int(env) if env else random.SystemRandom().randrange(1, 2**32)


def test_sigkill_during_apply(host: Host, configs: dict[str, str]) -> None:
    """SIGKILL ``emptcp apply`` at random moments (seeded: the seed is printed first, and
    EMPTCP_TEST_SEED=<seed> replays the same schedule). After every kill:
    the pin root holds the old or the new configuration, committed and attached; any
    attachment the configuration does not own is an interrupted apply's link, listed by
    ``status`` as stale and removed by the next command; the next command repairs all."""
    seed = _seed()
    print(f"EMPTCP_TEST_SEED={seed}", flush=True)
    durations: dict[str, float] = {}
    digests = _learn_digests(host, configs, durations)
    rng = random.Random(seed)
    schedule = []
    prog_ids: set[int] = set()
    outcomes = {"old": 0, "new": 0, "empty": 0}
    stale_after_kill: list[str] = []
    for i in range(24):
        cold = i % 6 == 0
        if cold:  # also kill first applies on an empty pin root
            host.detach_all()
        before = host.status()
        target = "three" if i % 2 else "one"
        # 0-300 ms, but no later than the end of a whole apply: most kills land inside it
        delay = rng.uniform(0, min(0.3, durations[target] * 1.1))
        schedule.append(f"{i}:{target}:{delay * 1000:.0f}ms{' cold' if cold else ''}")
        where = f"seed {seed} iteration {schedule[-1]}"
        p = subprocess.Popen(host.argv("apply", configs[target]), stdout=subprocess.PIPE,
                             stderr=subprocess.PIPE, start_new_session=True)
        time.sleep(delay)  # the random kill moment itself (seeded), not a wait
        try:
            os.killpg(p.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        p.communicate()
        st = host.status()
        if not st["applied"]:
            assert not before["applied"], f"{where}: the previous configuration vanished"
            outcomes["empty"] += 1
            expected = {"xdp": [], "tc": {}}
        else:
            st = assert_complete(host, digests, where)
            new = st["digest"] == digests[target]
            outcomes["new" if new else "old"] += 1
            if not new:
                assert before["applied"] and st["digest"] == before["digest"], where
                assert st["generation"] == before["generation"], where
            expected = _expected_attachments(st)
            prog_ids |= host.owned_prog_ids()
        actual = _actual_attachments(host)
        if actual != expected:
            # only an interrupted apply's links may be extra, and status must name them
            stale_after_kill.append(where)
            extra = _extra_attachments(actual, expected)
            assert extra and not _extra_attachments(expected, actual), \
                f"{where}: attachments missing, not just extra: {actual} vs {expected}"
            stale_ids = {s.get("prog_id") for s in st["stale"]}
            assert st["stale"] and None not in stale_ids, \
                f"{where}: extra attachments {extra} not listed as stale: {st['stale']}"
            assert len(st["stale"]) == sum(len(v) if isinstance(v, list) else v
                                           for v in extra.values()), (where, extra, st["stale"])
            prog_ids |= stale_ids
        else:
            assert st["stale"] == [], f"{where}: stale links listed but nothing extra: {st}"
        # the next command repairs what a killed one left behind
        other = "three" if target == "one" else "one"
        if i % 3 == 2 or actual != expected:
            host.apply(configs[other])
            st = assert_complete(host, digests, f"{where} (repair apply)")
            assert st["digest"] == digests[other]
            assert _actual_attachments(host) == _expected_attachments(st), where
            assert st["stale"] == [], f"{where} (repair apply): {st['stale']}"
            prog_ids |= host.owned_prog_ids()
    print(f"seed {seed}; kill schedule:", " ".join(schedule), "; outcomes:", outcomes,
          "; stale attachments right after a kill (each listed by status, then repaired):",
          stale_after_kill or "none")
    assert sum(outcomes.values()) == 24, outcomes
    assert outcomes["old"] + outcomes["new"] >= 6, outcomes
    for name in ("one", "three"):
        host.apply(configs[name])
        st = assert_complete(host, digests, f"final {name}")
        assert st["digest"] == digests[name]
        assert _actual_attachments(host) == _expected_attachments(st)
        prog_ids |= host.owned_prog_ids()
    host.detach_all()
    host.assert_clean(prog_ids)


def _extra_attachments(a: dict[str, Any], b: dict[str, Any]) -> dict[str, Any]:
    """What ``a`` attaches that ``b`` does not (XDP interfaces; TC counts above b's)."""
    xdp = [x for x in a["xdp"] if x not in b["xdp"]]
    tc = {k: n - b["tc"].get(k, 0) for k, n in a["tc"].items() if n > b["tc"].get(k, 0)}
    return {k: v for k, v in (("xdp", xdp), ("tc", tc)) if v}


def test_concurrent_applies_serialise(host: Host, configs: dict[str, str]) -> None:
    digests = _learn_digests(host, configs)
    for rnd in range(3):
        host.detach_all()  # from empty: both applies commit (generations 0 and 1)
        procs = [subprocess.Popen(host.argv("apply", configs[n]), stdout=subprocess.PIPE,
                                  stderr=subprocess.PIPE, text=True)
                 for n in (("one", "three") if rnd % 2 else ("three", "one"))]
        outs = [p.communicate(timeout=60) for p in procs]
        for p, (o, e) in zip(procs, outs):
            assert p.returncode == 0, e
        st = assert_complete(host, digests, f"round {rnd}")
        assert st["digest"] in (digests["one"], digests["three"])
        assert _actual_attachments(host) == _expected_attachments(st)
        gens = [int(o.split("applied generation ")[1].split()[0]) for o, _ in outs]
        assert sorted(gens) == [0, 1], outs  # two commits, one after the other
        last = ("one", "three")[gens.index(1)] if rnd % 2 else ("three", "one")[gens.index(1)]
        assert st["generation"] == 1 and st["digest"] == digests[last], (outs, st["digest"])
    host.detach_all()
    host.assert_clean()


def test_reapply_same_file_changes_nothing(host: Host, configs: dict[str, str]) -> None:
    host.apply(configs["three"])
    st = host.status()
    tree = host.tree()
    links = {h["name"]: h["attached"] for h in st["hooks"]}
    p = host.apply(configs["three"])
    assert "no changes" in p.stdout
    st2 = host.status()
    assert st2["generation"] == st["generation"] and st2["digest"] == st["digest"]
    assert st2["applied_at"] == st["applied_at"]
    assert {h["name"]: h["attached"] for h in st2["hooks"]} == links
    assert host.tree() == tree
    j = host.ok("apply", "--json", configs["three"]).stdout
    assert '"changed": false' in j
    # a changed parameter is a new generation; applying it again is "no changes" again
    changed = configs["three"] + ".2.toml"
    with open(changed, "w") as f:
        f.write(THREE.replace("window = 2048", "window = 4096"))
    out = host.apply(changed).stdout
    assert "~ policy web on wan" in out and "applied generation 1" in out
    assert "no changes" in host.apply(changed).stdout
    assert host.status()["generation"] == 1
    host.detach_all()
    host.assert_clean()


KILL_AT = """
import os, signal, sys
from emptcp.api import load
from emptcp.runtime.engine import Engine
step, path, root = sys.argv[1:4]
def progress(s):
    if s == step:
        os.kill(os.getpid(), signal.SIGKILL)
Engine(root, progress).apply(load(path))
"""
STEPS = ("load", "clear", "programs", "tables", "attach", "flip", "cleanup")


def test_sigkill_at_every_step(host: Host, configs: dict[str, str]) -> None:
    """Deterministic: SIGKILL the applying process at each step the engine reports,
    on an empty pin root and on top of another configuration."""
    import sys
    digests = _learn_digests(host, configs)
    for cold in (True, False):
        for step in STEPS:
            where = f"{'cold' if cold else 'warm'} kill at {step!r}"
            if cold:
                host.detach_all()
            else:
                host.apply(configs["one"])
            before = host.status()
            p = subprocess.run(["nsenter", f"--net=/var/run/netns/{host.ns}", "--",
                                sys.executable, "-c", KILL_AT, step, configs["three"],
                                host.pin_root], capture_output=True, text=True, timeout=60)
            assert p.returncode == -signal.SIGKILL, (where, p.returncode, p.stderr)
            st = host.status()
            if not st["applied"]:
                assert cold and step != "cleanup", f"{where}: configuration vanished"
            else:
                st = assert_complete(host, digests, where)
                if st["digest"] == digests["one"]:
                    assert not cold and st["generation"] == before["generation"], where
                else:  # the flip happened: only from the 'flip' step's end on
                    assert step == "cleanup", f"{where}: new config visible before its flip"
            # the next apply repairs whatever the killed one left
            host.apply(configs["one"])
            st = assert_complete(host, digests, f"{where} (repair)")
            assert st["digest"] == digests["one"]
            assert _actual_attachments(host) == _expected_attachments(st), where
    host.detach_all()
    host.assert_clean()
