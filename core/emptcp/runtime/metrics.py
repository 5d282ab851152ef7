"""Prometheus metrics for one pin root, read the way ``emptcp status`` reads them.

Every scrape calls :meth:`emptcp.runtime.engine.Engine.status` once and turns
that one reading into metric families (a custom collector: no counting code
of its own, so a scrape and ``emptcp status --json`` taken at the same moment
agree exactly). A long-running process (``emptcp run``) adds what only it
knows -- its applies and configuration reloads -- through :class:`RunStats`.

    registry = CollectorRegistry()
    registry.register(StatusCollector("/sys/fs/bpf/emptcp", RunStats()))
    server = serve("127.0.0.1:9436", registry)     # http://127.0.0.1:9436/metrics
"""
from __future__ import annotations

import contextlib
import logging
import threading
import time
from dataclasses import dataclass, field
from typing import Any, Callable, Iterator

from prometheus_client.core import (CounterMetricFamily, GaugeMetricFamily, Metric,
                                    SummaryMetricFamily)
from prometheus_client.registry import Collector, CollectorRegistry

from ..errors import ConfigError, PluginError

__all__ = ["StatusCollector", "RunStats", "status_families", "parse_listen", "serve",
           "registry_for"]

log = logging.getLogger("emptcp.metrics")

HOOK_LABELS = ["hook", "interface", "type"]
STAGE_LABELS = ["hook", "interface", "policy", "phase", "stage", "use"]
_HOOK_COUNTERS = [
    ("packets", "Packets that entered emptcp's entry program on this hook."),
    ("matched", "Packets that matched a policy (its actions ran)."),
    ("unmatched", "Packets no policy matched (left without a verdict)."),
    ("missed_tail_calls", "Stages that could not be reached by a tail call (empty slot, "
                          "tail-call limit); the packet left without a verdict."),
    ("errors", "Data-path errors on this hook: bad chain context, missing parameter blob, "
               "events dropped because the event ring was full."),
]
_STAGE_COUNTERS = [
    ("packets", "Packets this stage ran on."),
    ("bytes", "Bytes of the packets this stage ran on (frame length at the stage)."),
    ("missed_tail_calls", "Times this stage should have run but the tail call failed."),
]


@dataclass
class RunStats:
    """What a long-running emptcp process knows that the pins do not: how its
    applies went (count, duration, failures) and the state of its last reload."""
    applies: dict[str, int] = field(default_factory=lambda: {"changed": 0, "unchanged": 0})
    failures: dict[str, int] = field(default_factory=lambda: {"config": 0, "kernel": 0})
    duration_sum: float = 0.0
    duration_count: int = 0
    last_ok: bool | None = None
    last_success_at: float | None = None
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    @contextlib.contextmanager
    def apply(self) -> Iterator[dict[str, Any]]:
        """Time one apply; the block sets ``out["changed"]``. Configuration errors
        (bad file, refused plugin) and runtime errors are counted apart."""
        out: dict[str, Any] = {"changed": True}
        start = time.monotonic()
        try:
            yield out
        except (ConfigError, PluginError):
            self._record(time.monotonic() - start, "config")
            raise
        except Exception:
            self._record(time.monotonic() - start, "kernel")
            raise
        self._record(time.monotonic() - start, None, bool(out["changed"]))

    def _record(self, seconds: float, failure: str | None, changed: bool = False) -> None:
        with self._lock:
            self.duration_sum += seconds
            self.duration_count += 1
            if failure:
                self.failures[failure] += 1
                self.last_ok = False
            else:
                self.applies["changed" if changed else "unchanged"] += 1
                self.last_ok = True
                self.last_success_at = time.time()

    def families(self) -> Iterator[Metric]:
        with self._lock:
            applies, failures = dict(self.applies), dict(self.failures)
            dsum, dcount, ok, at = (self.duration_sum, self.duration_count, self.last_ok,
                                    self.last_success_at)
        c = CounterMetricFamily("emptcp_applies", "Successful applies by this process "
                                "(result: changed = a new generation, unchanged = no-op).",
                                labels=["result"])
        for result, n in sorted(applies.items()):
            c.add_metric([result], n)
        yield c
        c = CounterMetricFamily("emptcp_apply_failures", "Applies by this process that "
                                "failed; the running generation kept running (reason: config "
                                "= invalid file or plugin, kernel = verifier, privileges, I/O).",
                                labels=["reason"])
        for reason, n in sorted(failures.items()):
            c.add_metric([reason], n)
        yield c
        yield SummaryMetricFamily("emptcp_apply_duration_seconds", "Time an apply took, "
                                  "from reading the file to the flip (failed ones included).",
                                  count_value=dcount, sum_value=dsum)
        if ok is not None:
            yield GaugeMetricFamily("emptcp_config_last_reload_successful", "Whether the "
                                    "last apply of the configuration file succeeded.",
                                    value=1 if ok else 0)
        if at is not None:
            yield GaugeMetricFamily("emptcp_config_last_reload_success_timestamp_seconds",
                                    "When the configuration file was last applied "
                                    "successfully (Unix time).", value=at)


class StatusCollector(Collector):
    """One ``Engine.status()`` per scrape, as Prometheus metric families."""

    def __init__(self, pin_root: str, run_stats: RunStats | None = None,
                 status: Callable[[], dict[str, Any]] | None = None) -> None:
        from .engine import Engine
        self.pin_root = pin_root
        self.run_stats = run_stats
        self._status = status or Engine(pin_root).status

    def describe(self) -> list[Metric]:
        return []  # names depend on the state; do not collect at registration

    def collect(self) -> Iterator[Metric]:
        try:
            st = self._status()
        except Exception as e:  # a scrape must not kill the server: report it
            log.warning("reading %s failed: %s", self.pin_root, e)
            yield GaugeMetricFamily("emptcp_up", "Whether emptcp's state could be read.",
                                    value=0)
            if self.run_stats:
                yield from self.run_stats.families()
            return
        yield GaugeMetricFamily("emptcp_up", "Whether emptcp's state could be read.", value=1)
        yield from status_families(st)
        if self.run_stats:
            yield from self.run_stats.families()


def status_families(st: dict[str, Any]) -> Iterator[Metric]:
    """Metric families of one ``Engine.status()`` reading."""
    yield GaugeMetricFamily("emptcp_applied", "Whether a configuration is applied under the "
                            "pin root.", value=1 if st["applied"] else 0)
    yield GaugeMetricFamily("emptcp_stale_links", "Links left by an interrupted apply (they "
                            "pass every packet; the next apply or detach removes them).",
                            value=len(st.get("stale", [])))
    if not st["applied"]:
        return
    yield GaugeMetricFamily("emptcp_active_generation", "The active table generation (0..3).",
                            value=st["generation"])
    yield GaugeMetricFamily("emptcp_generation_applied_timestamp_seconds", "When the active "
                            "generation was applied (Unix time).", value=st["applied_at"])
    info = GaugeMetricFamily("emptcp_config_info", "The applied configuration: its digest "
                             "(unchanged by a no-op or failed re-apply).",
                             labels=["digest", "pin_root"])
    info.add_metric([st["digest"], st["pin_root"]], 1)
    yield info
    hooks = [(h, [h["name"], h["interface"], h["type"]]) for h in st["hooks"]]
    attached = GaugeMetricFamily("emptcp_hook_attached", "Whether the hook's link is attached.",
                                 labels=HOOK_LABELS)
    tcx_index = GaugeMetricFamily("emptcp_hook_tcx_index", "Where emptcp runs among the TCX "
                                  "programs of the hook (0 = first).", labels=HOOK_LABELS)
    tcx_count = GaugeMetricFamily("emptcp_hook_tcx_programs", "TCX programs on the hook, "
                                  "emptcp included.", labels=HOOK_LABELS)
    for h, labels in hooks:
        attached.add_metric(labels, 1 if h["attached"] else 0)
        tcx = (h["attached"] or {}).get("tcx")
        if tcx and tcx.get("index") is not None:
            tcx_index.add_metric(labels, tcx["index"])
            tcx_count.add_metric(labels, tcx["count"])
    yield from (attached, tcx_index, tcx_count)
    for key, text in _HOOK_COUNTERS:
        c = CounterMetricFamily(f"emptcp_hook_{key}", text, labels=HOOK_LABELS)
        for h, labels in hooks:
            c.add_metric(labels, h["counters"][key])
        yield c
    stages = []
    for h, _ in hooks:
        for p in h["policies"]:
            for phase in ("selectors", "actions"):
                for i, s in enumerate(p[phase]):
                    stages.append(([h["name"], h["interface"], p["name"], phase[:-1], str(i),
                                    s["use"]], s["counters"]))
    for key, text in _STAGE_COUNTERS:
        c = CounterMetricFamily(f"emptcp_stage_{key}", text, labels=STAGE_LABELS)
        for labels, counters in stages:
            c.add_metric(labels, counters[key])
        yield c


def parse_listen(text: str) -> tuple[str, int]:
    """``ADDR:PORT``, ``:PORT`` (all addresses) or ``[IPv6]:PORT`` -> (address, port)."""
    host, sep, port = text.rpartition(":")
    if not sep or not port.isdigit() or not 0 <= int(port) <= 65535:
        raise ConfigError(f"--listen {text!r}: expected ADDR:PORT, e.g. 127.0.0.1:9436, "
                          ":9436 or [::1]:9436")
    host = host.strip("[]") or "0.0.0.0"
    return host, int(port)


def serve(listen: str, registry: CollectorRegistry) -> Any:
    """Serve ``registry`` at http://ADDR:PORT/metrics in a daemon thread; returns the
    server (``.server_port`` is the bound port, useful with port 0; ``.shutdown()``)."""
    from prometheus_client import start_http_server
    host, port = parse_listen(listen)
    server, _thread = start_http_server(port, host, registry)
    return server


def registry_for(pin_root: str, run_stats: RunStats | None = None,
                 process: bool = True) -> CollectorRegistry:
    """A registry with emptcp's collector (and the standard process_* metrics)."""
    registry = CollectorRegistry()
    registry.register(StatusCollector(pin_root, run_stats))
    if process:
        from prometheus_client import ProcessCollector
        ProcessCollector(registry=registry)
    return registry
