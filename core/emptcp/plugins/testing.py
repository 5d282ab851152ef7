"""Run stages through the real chain in the kernel (BPF_PROG_TEST_RUN), for plugin tests.

    from emptcp.plugins.testing import ChainHarness
    with ChainHarness(my_plugin.stage_specs()) as h:
        h.policy("xdp", selectors=[("demo_sel", {"port": 80})], actions=[("drop", {})])
        r = h.run("xdp", frame)          # emptcp.TestRunResult: retval, data, ...
        h.hook_stats("xdp")              # {"packets":.., "matched":.., ...}

The harness loads the installed entry object, the built-in stages you name
and your specs' objects around one set of shared maps (emptcp.datapath), the
way ``emptcp apply`` does, minus pinning and attaching. Needs root.
"""
from __future__ import annotations

from typing import Any, Iterable

from .. import builtin_object
from ..stages import HOOK_TYPE, StageSpec, validate_params

__all__ = ["ChainHarness"]

LO = 1          # BPF_PROG_TEST_RUN runs on the loopback device
HOOK_IDS = {"xdp": 0, "tc-ingress": 1, "tc-egress": 2}


class ChainHarness:
    def __init__(self, specs: Iterable[StageSpec] = (), builtins: Iterable[str] = ("drop", "pass", "count")) -> None:
        from ..chain_compiler import HookPolicies  # noqa: F401  (fail early if missing)
        from ..datapath import Datapath
        from .builtin import builtin_specs
        self.dp = Datapath(builtin_object("entry"))
        known = {s.name: s for s in builtin_specs() if s.name in set(builtins)}
        known.update({s.name: s for s in specs})
        self.specs = known
        try:
            for spec in known.values():
                obj = self.dp._load(spec.object, self.dp.maps)
                for htype, prog in spec.programs.items():
                    self.dp.stages[(spec.name, htype)] = obj.programs[prog]
            self.slots = self.dp.auto_slots()
            self.dp.install(0, self.slots)
            for kind, hid in HOOK_IDS.items():
                self.dp.set_hook(LO, kind, hid)
        except BaseException:
            self.dp.close()
            raise
        self._policies: dict[str, list[Any]] = {k: [] for k in HOOK_IDS}

    def _ref(self, item: tuple[str, dict[str, Any]] | str, op: str = "and"):
        from ..chain_compiler import StageRef
        name, params = (item, {}) if isinstance(item, str) else (item[0], item[1])
        if len(item) == 3 and not isinstance(item, str):
            op = item[2]
        spec = self.specs[name]
        enc = spec.encode(validate_params(spec, params, f"test.{name}"))
        return StageRef(name, enc if (enc or isinstance(enc, bytes)) else 0, op)

    def policy(self, kind: str, selectors: Iterable = (), actions: Iterable = ()) -> None:
        """Append a policy to hook ``kind`` and (re)write generation 0.

        selectors/actions: ``"name"``, ``(name, params)`` or (selectors)
        ``(name, params, "or")``."""
        from ..chain_compiler import HookPolicies, PolicySpec, compile_generation
        self._policies[kind].append(PolicySpec([self._ref(s) for s in selectors],
                                               [self._ref(a) for a in actions],
                                               uid=len(self._policies[kind]) + 1))
        hooks = [HookPolicies(HOOK_IDS[k], k, p) for k, p in self._policies.items() if p]
        self.dp.write_tables(compile_generation(0, hooks, self.slots))
        self.dp.flip(0)

    def clear(self) -> None:
        from ..chain_compiler import compile_generation
        self._policies = {k: [] for k in HOOK_IDS}
        self.dp.write_tables(compile_generation(0, [], self.slots))
        self.dp.clear_stats()

    def run(self, kind: str, frame: bytes, **kw: Any):
        HOOK_TYPE[kind]
        return self.dp.entry[kind].test_run(frame, **kw)

    def hook_stats(self, kind: str) -> dict[str, int]:
        return self.dp.hook_stats(HOOK_IDS[kind])

    @property
    def events(self):
        """The shared emptcp_events ring buffer map (read it with emptcp.RingBuffer)."""
        return self.dp.maps["emptcp_events"]

    def close(self) -> None:
        self.dp.close()

    def __enter__(self) -> "ChainHarness":
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()
