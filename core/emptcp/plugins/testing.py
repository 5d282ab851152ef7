"""Run stages through the real chain in the kernel (BPF_PROG_TEST_RUN), for plugin tests.

    from emptcp.plugins.testing import ChainHarness
    with ChainHarness(my_plugin.stage_specs(), builtins=("count", "drop")) as h:
        h.policy("xdp", selectors=[("demo_sel", {"port": 80})], actions=["count", "drop"])
        r = h.run("xdp", frame)          # emptcp.TestRunResult: retval, data, meta, ctx
        h.hook_stats("xdp")              # {"packets", "matched", "unmatched", ...}
        h.stage_stats("xdp", policy=0, stage=0, phase="actions")   # {"packets", "bytes", ...}
        h.clear()                        # no policies, counters zeroed

The harness loads the installed entry object, the built-in stages you name
(``builtins=``, default ``("drop", "pass", "count")``) and your specs' objects
around one set of shared maps (emptcp.runtime.datapath), the way ``emptcp apply``
does, minus pinning and attaching: the entry programs are registered for the
loopback device (ifindex 1, where ``BPF_PROG_TEST_RUN`` runs packets) on all
three hook kinds. Needs root.

``run(kind, frame).data`` is the output packet *without* the XDP metadata
(the 20-byte chain context lives in ``data_meta``); ``.meta`` holds it.
"""
from __future__ import annotations

from typing import Any, Iterable

from .. import builtin_object
from ..chain.stages import HOOK_TYPE, StageSpec, validate_params

__all__ = ["ChainHarness"]

LO = 1          # BPF_PROG_TEST_RUN runs on the loopback device
HOOK_IDS = {"xdp": 0, "tc-ingress": 1, "tc-egress": 2}


class ChainHarness:
    """One chain data path for tests: entry programs + stages + shared maps.

    :param specs: your :class:`~emptcp.stages.StageSpec` list (e.g. the one
        your ``emptcp_stages`` hook returns); no plugin manager is involved,
        the plugin does not need to be installed.
    :param builtins: names of built-in stages to load too (``"count"``,
        ``"drop"``, ``"pass"``, ``"service"``, ...; see ``emptcp plugins``).
    :param fuse: run consecutive built-in actions as one fused program, as
        ``emptcp apply`` does (False: one program per action).
    """

    def __init__(self, specs: Iterable[StageSpec] = (), builtins: Iterable[str] = ("drop", "pass", "count"),
                 fuse: bool = True) -> None:
        from ..runtime.datapath import Datapath
        from .builtin import builtin_specs
        self.dp = Datapath(builtin_object("entry"))
        self.dp.fuse = fuse
        known = {s.name: s for s in builtin_specs() if s.name in set(builtins)}
        known.update({s.name: s for s in specs})
        self.specs = known
        try:
            for spec in known.values():
                self.dp.load_stage(spec.name, spec.object, spec.programs)
            self.slots = self.dp.install(0)
            for kind, hid in HOOK_IDS.items():
                self.dp.set_hook(LO, kind, hid)
        except BaseException:
            self.dp.close()
            raise
        self._policies: dict[str, list[Any]] = {k: [] for k in HOOK_IDS}

    def _ref(self, item: tuple[str, dict[str, Any]] | str, op: str = "and"):
        from ..chain.compiler import StageRef
        name, params = (item, {}) if isinstance(item, str) else (item[0], item[1])
        if len(item) == 3 and not isinstance(item, str):
            op = item[2]
        spec = self.specs[name]
        enc = spec.encode(validate_params(spec, params, f"test.{name}"))
        return StageRef(name, enc if (enc or isinstance(enc, bytes)) else 0, op)

    def policy(self, kind: str, selectors: Iterable = (), actions: Iterable = ()) -> None:
        """Append a policy to hook ``kind`` and (re)write generation 0.

        selectors/actions: ``"name"`` (no parameters: defaults), ``(name,
        params)`` or (selectors) ``(name, params, "or")`` to OR this selector
        into the result so far (default: AND; a left fold, no precedence).
        Parameters are validated and encoded like TOML ones (a
        :class:`emptcp.errors.ConfigError` on bad values). Policies of one
        hook are tried in the order they were added."""
        from ..chain.compiler import PolicySpec
        self._policies[kind].append(PolicySpec([self._ref(s) for s in selectors],
                                               [self._ref(a) for a in actions],
                                               uid=len(self._policies[kind]) + 1))
        self._write()

    def _write(self) -> None:
        from ..chain.compiler import HookPolicies
        hooks = [HookPolicies(HOOK_IDS[k], k, p) for k, p in self._policies.items() if p]
        self.dp.write(0, hooks, self.slots)
        self.dp.flip(0)

    def clear(self) -> None:
        """Remove every policy of every hook and zero all hook and stage counters."""
        self._policies = {k: [] for k in HOOK_IDS}
        self._write()
        self.dp.clear_stats()

    def run(self, kind: str, frame: bytes, **kw: Any):
        """Run ``frame`` (bytes from the Ethernet header on) through hook ``kind``.

        ``kind``: ``"xdp"``, ``"tc-ingress"`` or ``"tc-egress"``. ``kw`` goes to
        :meth:`emptcp.Program.test_run` (``repeat=``, ``ctx=``, ``meta=``,
        ``out_size=``...). Returns an :class:`emptcp.TestRunResult`: ``retval``
        (XDP_DROP 1, XDP_PASS 2; TC_ACT_OK 0, TC_ACT_SHOT 2, TC_ACT_UNSPEC -1 when
        the chain decided nothing -- docs/abi.md "Verdicts"), ``data`` (the
        packet after the chain, XDP metadata excluded), ``meta`` (the XDP
        metadata: the chain context), ``ctx``, ``cb`` (TC: skb->cb).
        """
        HOOK_TYPE[kind]
        return self.dp.entry[kind].test_run(frame, **kw)

    def hook_stats(self, kind: str) -> dict[str, int]:
        """Counters of hook ``kind`` since the last :meth:`clear`: ``packets``,
        ``matched``, ``unmatched``, ``missed_tail_calls``, ``errors``."""
        return self.dp.hook_stats(HOOK_IDS[kind])

    def stage_stats(self, kind: str, policy: int = 0, stage: int = 0,
                    phase: str = "actions") -> dict[str, int]:
        """Counters of one stage position: ``packets``, ``bytes``, ``missed_tail_calls``.

        ``policy`` is the index of the policy on hook ``kind`` in the order of
        the :meth:`policy` calls (0 = first), ``stage`` the index in its
        ``selectors`` or ``actions`` list, ``phase`` ``"selectors"`` or
        ``"actions"``. A selector skipped by short-circuit (``or`` after
        true, ``and`` after false) is not run and not counted.
        """
        phases = {"selectors": 0, "selector": 0, "actions": 1, "action": 1}
        if phase not in phases:
            raise ValueError(f"phase must be 'selectors' or 'actions', not {phase!r}")
        return self.dp.stage_stats(HOOK_IDS[kind], policy, phases[phase], stage)

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
