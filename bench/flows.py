"""``flows.*``: run-time selector entries (``emptcp.runtime.flows``) vs ``bpftool batch file``.

Set-up (untimed): a network namespace with a veth pair, a policy ``conns`` (XDP on veth0,
``tcp4tuple`` -> ``count``) applied under a private pin root.

* ``flows.add.N``: ``Flows.add("conns", N entries)`` -- N connection dicts in, the keys
  written to the running generation (parse, class lookups, one batched update).
* ``flows.delete.N``: the same N entries removed.

Baseline (same run): ``bpftool batch file`` with one ``map update`` / ``map delete`` line
per key, the keys and values emptcp wrote (read back from the map outside the timing),
i.e. what a shell user would run to load a prepared set. Checked outside the timing: the
map holds exactly the N keys (+ the static one) after each add, none after each delete.
Cost unit: µs per entry.
"""
from __future__ import annotations

import os
import shutil
import subprocess
import uuid

from ._util import bpftool, median, timed
from .registry import Context, Result, benchmark

CONFIG = """\
[hooks.in]
interface = "veth0"
type = "xdp"

[[policy]]
name = "conns"
hook = "in"
selectors = [ { use = "tcp4tuple", local_addr = "10.0.0.1", local_port = 1, \
remote_addr = "10.0.0.2", remote_port = 1 } ]
actions = [ { use = "count" } ]
"""


def _entries(n: int) -> list[dict]:
    return [{"local_addr": f"10.{1 + (i >> 16)}.{(i >> 8) & 255}.{i & 255}", "local_port": 80,
             "remote_addr": "10.0.0.2", "remote_port": 40000} for i in range(n)]


def _hex(b: bytes) -> str:
    return "hex " + " ".join(f"{x:02x}" for x in b)


@benchmark("flows")
def flows(ctx: Context) -> list[Result]:
    from emptcp import api
    from emptcp.bpf.maps import Map
    from emptcp.netns import enter
    from emptcp.runtime.flows import Flows
    ns = f"fbench-{uuid.uuid4().hex[:6]}"
    root = f"/sys/fs/bpf/emptcp-bench-flows-{uuid.uuid4().hex[:6]}"
    cfg = os.path.join(ctx.tmpdir, "flows.toml")
    with open(cfg, "w") as f:
        f.write(CONFIG)
    subprocess.run(["ip", "netns", "add", ns], check=True)
    out: list[Result] = []
    try:
        def nsrun(*cmd: str) -> None:
            subprocess.run(["nsenter", f"--net=/var/run/netns/{ns}", "--", *cmd], check=True)
        nsrun("ip", "link", "add", "veth0", "type", "veth", "peer", "name", "veth1")
        nsrun("ip", "link", "set", "veth0", "up")
        with enter(ns):
            api.apply(cfg, root)
        fl = Flows(root)
        keys_pin = os.path.join(root, "maps", "emptcp_keys")
        with Map.from_pin(keys_pin) as m:      # the policy's static entry
            static = {bytes(k) for k, _ in m.lookup_batch()}
        rounds = ctx.pick(3, 1)
        for n in ctx.pick((10_000, 100_000), (10_000,)):
            es = _entries(n)
            t = {"add": [], "del": [], "sh_add": [], "sh_del": []}
            for _ in range(rounds):
                t["add"].append(timed(lambda: fl.add("conns", es))[0])
                with Map.from_pin(keys_pin) as m:
                    written = [(k, v) for k, v in m.lookup_batch()]
                if len(written) != n + 1:
                    raise AssertionError(f"flows.add: {len(written)} keys, want {n + 1}")
                t["del"].append(timed(lambda: fl.delete("conns", es))[0])
                with Map.from_pin(keys_pin) as m:
                    if len(m.lookup_batch()) != 1:
                        raise AssertionError("flows.delete left keys behind")
                new = [(k, v) for k, v in written if bytes(k) not in static]
                adds = os.path.join(ctx.tmpdir, f"add-{n}")
                dels = os.path.join(ctx.tmpdir, f"del-{n}")
                with open(adds, "w") as f:
                    f.writelines(f"map update pinned {keys_pin} key {_hex(k)} value {_hex(v)}\n"
                                 for k, v in new)
                with open(dels, "w") as f:
                    f.writelines(f"map delete pinned {keys_pin} key {_hex(k)}\n" for k, _ in new)
                t["sh_add"].append(timed(lambda: bpftool("batch", "file", adds))[0])
                with Map.from_pin(keys_pin) as m:
                    if len(m.lookup_batch()) != n + 1:
                        raise AssertionError("bpftool batch: keys missing")
                t["sh_del"].append(timed(lambda: bpftool("batch", "file", dels))[0])
            us = {k: median(v) * 1e6 / n for k, v in t.items()}
            base = "bpftool batch file, one line per key (the same keys and values)"
            out += [
                Result(f"flows.add.{n}", us["add"], "µs/op", base, us["sh_add"],
                       description=f"emptcp.runtime.flows.Flows.add of {n} connections (dicts "
                                   "in, keys in the running generation), per entry"),
                Result(f"flows.delete.{n}", us["del"], "µs/op", base, us["sh_del"],
                       description=f"Flows.delete of the same {n} connections, per entry"),
            ]
        with enter(ns):
            api.detach(pin_root=root, all=True)
    finally:
        subprocess.run(["ip", "netns", "del", ns], check=False)
        shutil.rmtree(root, ignore_errors=True)
    return out

