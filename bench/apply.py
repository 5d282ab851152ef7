"""``emptcp apply`` latency beside what a shell user does by hand (same run, same tables).

Set-up (untimed): one network namespace with a veth pair ``veth0``/``veth1`` (both ends
inside it) and a private pin root per measurement. Configurations of N policies
(N = 1, 10, 100; 1 and 10 with --quick) are spread over up to 4 hooks (XDP on veth0 and
veth1, tc-ingress and tc-egress on veth0) so the tail-call bound of 32 per hook holds
(25 policies with one selector each: at most 25 selectors + 1 action on a packet's
path). Each policy is ``service ports=[P]`` -> ``count``.

emptcp side (timed): the ``emptcp apply FILE --pin-root R`` command, run through
``nsenter --net=`` (a process, as a user runs it; Python start-up and plugin discovery,
~0.1 s, included), and for the cold and warm cases also the in-process
``emptcp.api.apply`` call (``*.api``).

* ``apply.cold.N``     first apply on an empty pin root: load the entry and the stage
                        objects, pin the shared maps, fill generation 0, attach, flip.
* ``apply.warm.N``     a second, different configuration (other ports) on top: new
                        generation, programs reloaded, tables filled, flip.
* ``apply.param.N``    the warm configuration again with one port of one policy changed.

Baseline (timed, same round): the equivalent raw work with bpftool/iproute2, one process
per command, writing **the same table entries** that emptcp wrote (read back from emptcp's
maps outside the timing, keys and values byte for byte):

* cold: ``bpftool prog loadall entry.o DIR pinmaps MAPS``; per stage object
  ``bpftool prog loadall OBJ DIR map name emptcp_* pinned MAPS/...`` (the shared maps
  reused); one ``bpftool batch file`` with every prog-array slot, policy, parameter, hook,
  classification (rules, rows, port table, keys) and state entry; ``ip link set dev X xdp pinned ...`` / ``tc qdisc add clsact`` +
  ``tc filter add ... bpf da pinned ...`` per hook (through ``nsenter --net=``).
* warm: the stage objects loaded again into a new directory + one batch file with the new
  generation's entries (the entry programs stay attached, as emptcp's links do).
* param: ``bpftool map update`` of the two port-table entries that change (the old port
  cleared, the new one set), in place (what a shell user would do; emptcp instead builds
  and flips a whole new generation so no packet sees half old, half new state).

bpftool ``loadall`` loads both the XDP and the TC program of a stage object, emptcp only
the ones a configuration uses.
"""
from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import uuid
from typing import Any

from ._util import bpftool, median, timed
from .registry import Context, Result, benchmark

HOOKS = [("h0", "veth0", "xdp"), ("h1", "veth1", "xdp"), ("h2", "veth0", "tc-ingress"),
         ("h3", "veth0", "tc-egress")]
PER_HOOK = 25


def _emptcp_bin() -> str:
    cand = os.path.join(os.path.dirname(sys.executable), "emptcp")
    return cand if os.path.exists(cand) else (shutil.which("emptcp") or "emptcp")


def config_text(n: int, base_port: int, changed: int | None = None) -> str:
    hooks = HOOKS[:max(1, min(len(HOOKS), -(-n // PER_HOOK) if n > PER_HOOK else
                              min(n, len(HOOKS))))]
    lines = []
    for name, dev, typ in hooks:
        lines += [f"[hooks.{name}]", f'interface = "{dev}"', f'type = "{typ}"', ""]
    for i in range(n):
        port = base_port + i + (1000 if i == changed else 0)
        lines += ["[[policy]]", f'name = "p{i}"', f'hook = "{hooks[i % len(hooks)][0]}"',
                  f'selectors = [ {{ use = "service", ports = [{port}] }} ]',
                  'actions = [ { use = "count" } ]', ""]
    return "\n".join(lines)


class _Ns:
    def __init__(self) -> None:
        self.name = f"ebench-{uuid.uuid4().hex[:6]}"
        subprocess.run(["ip", "netns", "add", self.name], check=True)
        self.run("ip", "link", "add", "veth0", "type", "veth", "peer", "name", "veth1")
        for d in ("veth0", "veth1", "lo"):
            self.run("ip", "link", "set", d, "up")

    def argv(self, *cmd: str) -> list[str]:
        return ["nsenter", f"--net=/var/run/netns/{self.name}", "--", *cmd]

    def run(self, *cmd: str, check: bool = True) -> str:
        p = subprocess.run(self.argv(*cmd), capture_output=True, text=True)
        if check and p.returncode != 0:
            raise RuntimeError(f"{' '.join(cmd)}: {p.stderr.strip()}")
        return p.stdout

    def close(self) -> None:
        subprocess.run(["ip", "netns", "del", self.name], check=False)


def _pin_root() -> str:
    return f"/sys/fs/bpf/emptcp-bench-{uuid.uuid4().hex[:8]}"


def _emptcp_apply(ns: _Ns, path: str, root: str) -> tuple[float, str]:
    def go() -> subprocess.CompletedProcess:
        return subprocess.run(ns.argv(_emptcp_bin(), "apply", path, "--pin-root", root),
                              capture_output=True, text=True)
    secs, p = timed(go)
    if p.returncode != 0:
        raise RuntimeError(f"emptcp apply failed: {p.stderr.strip()}")
    return secs, p.stdout


def _status(ns: _Ns, root: str) -> dict[str, Any]:
    return json.loads(ns.run(_emptcp_bin(), "status", "--json", "--pin-root", root))


def _check_emptcp(ns: _Ns, root: str, n: int, gen: int) -> dict[str, Any]:
    st = _status(ns, root)
    if not st["applied"] or st["generation"] != gen:
        raise AssertionError(f"emptcp: expected generation {gen}, got {st}")
    if sum(len(h["policies"]) for h in st["hooks"]) != n or \
            not all(h["attached"] for h in st["hooks"]):
        raise AssertionError("emptcp: policies missing or a hook not attached")
    return st


#: table -> which of its entries belong to generation ``gen`` (key bytes, value bytes)
def _of_gen(gen: int) -> dict[str, Any]:
    from emptcp import abi

    def idx(k: bytes) -> int:
        return int.from_bytes(k, sys.byteorder)
    pol = (abi.policy_index(gen, 0, 0), abi.policy_index(gen + 1, 0, 0))
    return {
        "emptcp_policies": lambda k, v: pol[0] <= idx(k) < pol[1] and any(v),
        "emptcp_params": lambda k, v: pol[0] * 16 <= idx(k) < pol[1] * 16,
        "emptcp_hooks": lambda k, v: True,
        "emptcp_hook_slots": lambda k, v: any(v),
        "emptcp_hook_rules": lambda k, v: idx(k) // abi.MAX_HOOKS == gen and any(v),
        "emptcp_rule_terms": lambda k, v: abi.rule_index(gen, 0, 0) <= idx(k)
        < abi.rule_index(gen + 1, 0, 0) and any(v),
        "emptcp_rows": lambda k, v: idx(k) // abi.MAX_CLASSES == gen and any(v),
        "emptcp_ports": lambda k, v: (idx(k) >> 16) // abi.PORT_TABLES_PER_GEN == gen
        and any(v),
        "emptcp_keys": lambda k, v: k[0] == gen,
        "emptcp_prefixes": lambda k, v: k[4] == gen,
    }


def _entries(root: str, gen: int) -> dict[str, Any]:
    """The active generation's table entries, raw, as emptcp wrote them: policies,
    parameters, hook ids and the classification of the built-in selectors."""
    from emptcp.abi import INSTANCE_BASE, PROG_ARRAY_SIZE, SLOTS_PER_GEN
    from emptcp.bpf.maps import Map
    maps = os.path.join(root, "maps")
    out: dict[str, Any] = {"gen": gen, "tables": []}
    for name, mine in _of_gen(gen).items():
        with Map.from_pin(os.path.join(maps, name)) as m:
            pairs = m.lookup_batch() if name != "emptcp_prefixes" else \
                [(k, m.lookup(k)) for k in m.raw_keys()]
            out["tables"] += [(name, k, v) for k, v in pairs if mine(k, v)]
    progs = {p["id"]: p.get("name", "") for p in json.loads(bpftool("-j", "prog", "show"))}
    out["slots"] = []
    for pa in ("emptcp_xdp_progs", "emptcp_tc_progs"):
        with Map.from_pin(os.path.join(maps, pa), key=int, value=int) as m:
            # the generation's program selectors, and the action instances (shared by
            # generations; the baseline loads each object once and points them all at it)
            for slot in [*range(gen * SLOTS_PER_GEN, (gen + 1) * SLOTS_PER_GEN),
                         *range(INSTANCE_BASE, PROG_ARRAY_SIZE)]:
                try:
                    out["slots"].append((pa, slot, progs[m[slot]]))
                except KeyError:
                    pass
    if not any(t == "emptcp_hook_rules" for t, _, _ in out["tables"]) or not out["slots"]:
        raise AssertionError("emptcp wrote no rules / prog-array slots")
    return out


def _hex(b: bytes) -> str:
    return "hex " + " ".join(f"{x:02x}" for x in b)


class _Shell:
    """The same configuration done by hand with bpftool / ip / tc."""

    def __init__(self, ns: _Ns, tmpdir: str) -> None:
        from emptcp import ObjectSpec, builtin_object, object_dir
        self.ns, self.tmpdir = ns, tmpdir
        self.root = f"/sys/fs/bpf/emptcp-bench-sh-{uuid.uuid4().hex[:8]}"
        self.maps = os.path.join(self.root, "maps")
        self.entry = builtin_object("entry")
        self.object_dir = object_dir()
        spec = ObjectSpec(self.entry)
        self.shared = [m for m in spec.maps if m.startswith("emptcp_")]
        spec.close()
        self.load_dirs = 0

    def _prog_path(self, gen_dir: str, prog: str) -> str:
        stage = prog[len("emptcp_"):].rsplit("_", 1)[0]
        return os.path.join(gen_dir, stage, prog)

    def batch_file(self, e: dict[str, Any], gen_dir: str, with_state: bool) -> str:
        lines = []
        for pa, slot, prog in e["slots"]:
            lines.append(f"map update pinned {self.maps}/{pa} key "
                         f"{_hex(slot.to_bytes(4, sys.byteorder))} value pinned "
                         f"{self._prog_path(gen_dir, prog)}")
        for name, k, v in e["tables"]:
            lines.append(f"map update pinned {self.maps}/{name} key {_hex(k)} value {_hex(v)}")
        if with_state:
            from emptcp.abi import ABI_VERSION
            state = e["gen"].to_bytes(4, sys.byteorder) + ABI_VERSION.to_bytes(4, sys.byteorder)
            lines.append(f"map update pinned {self.maps}/emptcp_state key "
                         f"{_hex(bytes(4))} value {_hex(state)}")
        path = os.path.join(self.tmpdir, f"batch-{uuid.uuid4().hex[:6]}")
        with open(path, "w") as f:
            f.write("\n".join(lines) + "\n")
        return path

    def stages(self, e: dict[str, Any]) -> list[str]:
        return sorted({prog[len("emptcp_"):].rsplit("_", 1)[0] for _, _, prog in e["slots"]})

    def cold(self, e: dict[str, Any], hooks: list[tuple[str, str, str]]) -> float:
        gen_dir = os.path.join(self.root, f"g{self.load_dirs}")
        self.load_dirs += 1
        batch = self.batch_file(e, gen_dir, with_state=True)
        reuse = [a for m in self.shared for a in ("map", "name", m, "pinned",
                                                  os.path.join(self.maps, m))]
        stages = self.stages(e)

        def work() -> None:
            os.makedirs(self.maps)   # mkdir -p
            os.makedirs(gen_dir)
            bpftool("prog", "loadall", self.entry, os.path.join(self.root, "entry"),
                    "pinmaps", self.maps)
            for s in stages:
                bpftool("prog", "loadall", os.path.join(self.object_dir, f"{s}.o"),
                        os.path.join(gen_dir, s), *reuse)
            bpftool("batch", "file", batch)
            qdisc = set()
            for _, dev, typ in hooks:
                if typ == "xdp":
                    self.ns.run("ip", "link", "set", "dev", dev, "xdp", "pinned",
                                os.path.join(self.root, "entry", "emptcp_xdp_entry"))
                    continue
                if dev not in qdisc:
                    self.ns.run("tc", "qdisc", "add", "dev", dev, "clsact")
                    qdisc.add(dev)
                d = typ.split("-")[1]
                self.ns.run("tc", "filter", "add", "dev", dev, d, "bpf", "direct-action",
                            "pinned", os.path.join(self.root, "entry", f"emptcp_tc_{d}_entry"))
        secs, _ = timed(work)
        self._check(e, hooks)
        return secs

    def warm(self, e: dict[str, Any], hooks: list[tuple[str, str, str]]) -> float:
        gen_dir = os.path.join(self.root, f"g{self.load_dirs}")
        self.load_dirs += 1
        batch = self.batch_file(e, gen_dir, with_state=True)
        reuse = [a for m in self.shared for a in ("map", "name", m, "pinned",
                                                  os.path.join(self.maps, m))]
        stages = self.stages(e)

        def work() -> None:
            os.makedirs(gen_dir)     # mkdir -p
            for s in stages:
                bpftool("prog", "loadall", os.path.join(self.object_dir, f"{s}.o"),
                        os.path.join(gen_dir, s), *reuse)
            bpftool("batch", "file", batch)
        secs, _ = timed(work)
        self._check(e, hooks)
        return secs

    def param(self, updates: list[tuple[str, bytes, bytes]]) -> float:
        """One ``bpftool map update`` per changed entry, in place."""
        def work() -> None:
            for name, key, value in updates:
                bpftool("map", "update", "pinned", f"{self.maps}/{name}", "key",
                        *_hex(key).split(), "value", *_hex(value).split())
        secs, _ = timed(work)
        for name, key, value in updates:
            got = json.loads(bpftool("-j", "map", "lookup", "pinned", f"{self.maps}/{name}",
                                     "key", *_hex(key).split()))
            if bytes(int(x, 16) for x in got["value"]) != value:
                raise AssertionError(f"baseline: {name} entry not updated")
        return secs

    def _check(self, e: dict[str, Any], hooks: list[tuple[str, str, str]]) -> None:
        net = json.loads(self.ns.run("bpftool", "-j", "net"))[0]
        n_xdp = sum(1 for h in hooks if h[2] == "xdp")
        n_tc = len(hooks) - n_xdp
        if len(net["xdp"]) != n_xdp or len(net["tc"]) != n_tc:
            raise AssertionError(f"baseline: attachments {net}")
        from emptcp.bpf.maps import Map
        for table in ("emptcp_policies", "emptcp_hook_rules"):
            with Map.from_pin(os.path.join(self.maps, table)) as m:
                for name, k, v in e["tables"]:
                    if name == table and m[k] != v:
                        raise AssertionError(f"baseline: {name} entry differs")

    def clean(self, hooks: list[tuple[str, str, str]]) -> None:
        for dev in {h[1] for h in hooks}:
            self.ns.run("ip", "link", "set", "dev", dev, "xdp", "off", check=False)
            self.ns.run("tc", "qdisc", "del", "dev", dev, "clsact", check=False)
        shutil.rmtree(self.root, ignore_errors=True)
        self.load_dirs = 0


def _hooks_of(text: str) -> list[tuple[str, str, str]]:
    names = [ln[len("[hooks."):-1] for ln in text.splitlines() if ln.startswith("[hooks.")]
    return [h for h in HOOKS if h[0] in names]


def _changed_param(a: dict[str, Any], b: dict[str, Any]) -> list[tuple[str, bytes, bytes]]:
    """What changing one policy's port means in generation ``a``'s tables, from the two
    generations emptcp wrote: the port-table entries that differ (the old port's class
    cleared, the new one's set), keyed in ``a``'s tables. Nothing else may differ."""
    from emptcp import abi
    shift = (b["gen"] - a["gen"]) * abi.PORT_TABLES_PER_GEN << 16

    def ports(e: dict[str, Any], by: int) -> dict[int, bytes]:
        return {int.from_bytes(k, sys.byteorder) - by: v
                for n, k, v in e["tables"] if n == "emptcp_ports"}
    old, new = ports(a, 0), ports(b, shift)
    zero = bytes(abi.PORT_CLASS.size)
    diff = [(k, new.get(k, zero)) for k in sorted(set(old) | set(new))
            if old.get(k, zero) != new.get(k, zero)]
    if len(diff) != 2:
        raise AssertionError(f"expected the old and the new port to differ, got {len(diff)}")
    return [("emptcp_ports", k.to_bytes(4, sys.byteorder), v) for k, v in diff]


@benchmark("apply")
def apply_latency(ctx: Context) -> list[Result]:
    from emptcp import api
    from emptcp.netns import enter
    sizes = ctx.pick([1, 10, 100], [1, 10])
    rounds = ctx.pick(3, 1)
    ns = _Ns()
    results: list[Result] = []
    try:
        for n in sizes:
            files = {}
            for tag, base, changed in (("a", 1000, None), ("b", 20000, None),
                                       ("b2", 20000, n // 2)):
                path = os.path.join(ctx.tmpdir, f"apply-{n}-{tag}.toml")
                with open(path, "w") as f:
                    f.write(config_text(n, base, changed))
                files[tag] = path
            hooks = _hooks_of(config_text(n, 1000))
            t: dict[str, list[float]] = {k: [] for k in
                                         ("cold", "warm", "param", "api", "api_warm", "sh_cold",
                                          "sh_warm", "sh_param")}
            for _ in range(rounds):
                root = _pin_root()
                shell = _Shell(ns, ctx.tmpdir)
                try:
                    s, out = _emptcp_apply(ns, files["a"], root)
                    _check_emptcp(ns, root, n, 0)
                    t["cold"].append(s)
                    ea = _entries(root, 0)
                    s, out = _emptcp_apply(ns, files["b"], root)
                    _check_emptcp(ns, root, n, 1)
                    t["warm"].append(s)
                    eb = _entries(root, 1)
                    s, out = _emptcp_apply(ns, files["b2"], root)
                    _check_emptcp(ns, root, n, 2)
                    t["param"].append(s)
                    updates = _changed_param(eb, _entries(root, 2))
                    ns.run(_emptcp_bin(), "detach", "--all", "--pin-root", root)
                    with enter(ns.name):  # the same cold and warm applies, in-process
                        s, res = timed(lambda: api.apply(files["a"], root))
                        if not res.changed or res.generation != 0:
                            raise AssertionError(f"api.apply: {res}")
                        t["api"].append(s)
                        s, res = timed(lambda: api.apply(files["b"], root))
                        if not res.changed or res.generation != 1:
                            raise AssertionError(f"api.apply: {res}")
                        t["api_warm"].append(s)
                        api.detach(pin_root=root, all=True)
                    t["sh_cold"].append(shell.cold(ea, hooks))
                    t["sh_warm"].append(shell.warm(eb, hooks))
                    t["sh_param"].append(shell.param(updates))
                finally:
                    shell.clean(hooks)
                    ns.run(_emptcp_bin(), "detach", "--all", "--pin-root", root, check=False)
                    shutil.rmtree(root, ignore_errors=True)
            m = {k: median(v) * 1e3 for k, v in t.items()}
            spread = f"{n} policies on {len(hooks)} hook(s), 1 selector + 1 action each"
            cold_base = (f"bpftool prog loadall (entry + stage objects, maps reused) + "
                         f"bpftool batch file ({len(ea['tables'])} "
                         f"table entries + prog-array slots) + ip link/tc filter attach "
                         f"per hook")
            results += [
                Result(f"apply.cold.{n}", m["cold"], "ms/op", cold_base, m["sh_cold"],
                       description=f"`emptcp apply` CLI process on an empty pin root, {spread}"),
                Result(f"apply.cold.{n}.api", m["api"], "ms/op", cold_base, m["sh_cold"],
                       description=f"in-process emptcp.api.apply on an empty pin root, {spread}"),
                Result(f"apply.warm.{n}", m["warm"], "ms/op",
                       "bpftool prog loadall of the stage objects + bpftool batch file of the "
                       "new generation's entries", m["sh_warm"],
                       description=f"`emptcp apply` of a different configuration on top, "
                                   f"{spread}"),
                Result(f"apply.warm.{n}.api", m["api_warm"], "ms/op",
                       "bpftool prog loadall of the stage objects + bpftool batch file of the "
                       "new generation's entries", m["sh_warm"],
                       description=f"in-process emptcp.api.apply of a different configuration "
                                   f"on top, {spread}"),
                Result(f"apply.param.{n}", m["param"], "ms/op",
                       "two `bpftool map update`s of the port table, in place (old port "
                       "cleared, new port set)",
                       m["sh_param"],
                       description=f"`emptcp apply` with one port of one policy changed "
                                   f"(a whole new generation, flipped atomically), {spread}"),
            ]
    finally:
        ns.close()
    return results
