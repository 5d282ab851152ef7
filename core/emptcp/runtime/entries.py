"""Run-time entries as keys: convert entries to a selector's keys and back, read the
keys of a generation, and find the run-time entries an apply must carry over.

Kernel maps only (no engine): :mod:`emptcp.runtime.flows` changes entries under the
pin-root lock, :mod:`emptcp.runtime.engine` carries them into a new generation.
"""
from __future__ import annotations

from typing import Any, Iterable, Mapping

from .. import abi
from ..chain.sets import SetParam, service_set, tcp2tuple_set, tcp4tuple_set
from ..errors import ConfigError, NotFoundError

__all__ = ["RUNTIME_STAGES", "entries_param", "entry_of", "keys_of", "carried"]

#: stages whose entries can change at run time (exact keys and ports)
RUNTIME_STAGES = ("tcp4tuple", "tcp2tuple", "service")
_TUPLE = ("local_addr", "local_port", "remote_addr", "remote_port")


def entries_param(stage: str, entries: Iterable[Mapping[str, Any]],
                  params: Mapping[str, Any] | None = None) -> SetParam:
    """The keys of ``entries`` for a selector of ``stage`` (``params``: the selector's
    applied parameters, for ``service``'s mode)."""
    rows = entries if isinstance(entries, list) else list(entries)
    try:
        if stage == "tcp4tuple":
            try:
                tuples = [(e["local_addr"], e["local_port"], e["remote_addr"], e["remote_port"])
                          for e in rows if len(e) == 4]
            except KeyError:
                tuples = []
            if len(tuples) != len(rows):
                bad = next(i for i, e in enumerate(rows) if set(e) != set(_TUPLE))
                raise ValueError(f"entry {bad} needs exactly {', '.join(_TUPLE)}")
            return tcp4tuple_set(tuples)
        if stage == "tcp2tuple":
            if all(set(e) == {"local_port", "remote_port"} for e in rows):
                return tcp2tuple_set(ports=[(e["local_port"], e["remote_port"]) for e in rows])
            if all(set(e) == {"local_addr", "remote_addr"} for e in rows):
                return tcp2tuple_set(addrs=[(e["local_addr"], e["remote_addr"]) for e in rows])
            raise ValueError("every entry needs local_port and remote_port, or every entry "
                             "local_addr and remote_addr")
        if stage == "service":
            ports: list[Any] = []
            for i, e in enumerate(rows):
                if set(e) != {"port"}:
                    raise ValueError(f"entry {i} needs exactly 'port' (a port or [lo, hi])")
                ports.append(tuple(e["port"]) if isinstance(e["port"], list) else e["port"])
            return service_set(ports, (params or {}).get("mode", "either"))
    except (ValueError, TypeError, KeyError) as e:
        raise ConfigError(f"{stage}: {e}") from None
    raise ConfigError(f"{stage} entries cannot change at run time (only "
                      f"{', '.join(RUNTIME_STAGES)})")


def entry_of(dim: str, k: Any) -> dict[str, Any]:
    """A key as the entry dict users give (inverse of entries_param)."""
    import ipaddress

    def ip(fam: int, raw: bytes) -> str:
        return str(ipaddress.ip_address(raw[:4] if fam == 4 else raw))
    if dim == "flow":
        fam, la, lp, ra, rp = k
        return {"local_addr": ip(fam, la), "local_port": lp, "remote_addr": ip(fam, ra),
                "remote_port": rp}
    if dim == "ports":
        return {"local_port": k[0], "remote_port": k[1]}
    if dim == "addrs":
        fam, la, ra = k
        return {"local_addr": ip(fam, la), "remote_addr": ip(fam, ra)}
    return {"port": k}


def _unpack_key(raw: bytes) -> tuple[int, int, str, Any]:
    gen, hook, dnum, fam, lp, rp, la, ra = abi.KEY.unpack(raw)
    dim = _DIM_NAMES[dnum]
    lp, rp = int.from_bytes(lp, "big"), int.from_bytes(rp, "big")
    key = {"flow": (fam, la, lp, ra, rp), "ports": (lp, rp), "addrs": (fam, la, ra)}[dim]
    return gen, hook, dim, key


_DIM_NAMES = {0: "flow", 1: "ports", 2: "addrs", 3: "laddr", 4: "raddr", 5: "lport", 6: "rport"}


def keys_of(maps: Mapping[str, Any], gen: int, hook: int, cdoc: dict[str, Any]
             ) -> dict[str, dict[Any, frozenset[int]]]:
    """dim -> {key: sets containing it} of one hook in one generation (exact and port
    dimensions; prefixes are never run-time entries)."""
    members = {c: frozenset(m) for c, _, m in cdoc["classes"]}
    out: dict[str, dict[Any, frozenset[int]]] = {}
    table = maps["emptcp_keys"]
    raws = [r for r in table.raw_keys() if r[0] == gen and r[1] == hook]
    for raw in raws:
        try:
            cls = abi.CLASS.unpack(table.lookup(raw))[0]
        except NotFoundError:
            continue
        _, _, dim, key = _unpack_key(raw)
        out.setdefault(dim, {})[key] = members.get(cls, frozenset())
    if any(d in ("lport", "rport") for _, d, _ in cdoc["classes"]):
        base = cdoc["port_table"] << 16
        ports = maps["emptcp_ports"]
        for i in range(65536):
            lc, rc = abi.PORT_CLASS.unpack(ports.lookup((base + i).to_bytes(4, "little")))
            if lc:
                out.setdefault("lport", {})[i] = members.get(lc, frozenset())
            if rc:
                out.setdefault("rport", {})[i] = members.get(rc, frozenset())
    return out


def carried(doc: dict[str, Any], maps: Mapping[str, Any], static: Mapping[tuple[str, int], SetParam]
            ) -> dict[tuple[str, int, str], dict[str, set]]:
    """The run-time entries of the generation ``doc`` describes: (policy name, selector
    index, stage) -> {dim: keys} -- every key of a selector's sets that its static
    entries (``static``: (policy name, selector index) -> the SetParam it was applied
    with) do not hold. An apply that keeps the policy adds them to its new sets."""
    gen = doc["generation"]
    out: dict[tuple[str, int, str], dict[str, set]] = {}
    for h in doc["resolved"]["hooks"]:
        cdoc = doc.get("written", {}).get("classify", {}).get(str(doc["hook_ids"][h["name"]]))
        if not cdoc:
            continue
        found = None
        for pi, p in enumerate(h["policies"]):
            for si, s in enumerate(p["selectors"]):
                owner = cdoc["owners"].get(f"{pi}/{si}")
                if not owner or s["use"] not in RUNTIME_STAGES or (p["name"], si) not in static:
                    continue
                if found is None:
                    found = keys_of(maps, gen, doc["hook_ids"][h["name"]], cdoc)
                had = {d: e for alt in static[(p["name"], si)].alternatives for d, e in alt}
                extra = {d: {k for k, m in found.get(d, {}).items() if sid in m} - had.get(d, set())
                         for d, sid in owner.items()}
                extra = {d: ks for d, ks in extra.items() if ks}
                if extra:
                    out[(p["name"], si, s["use"])] = extra
    return out
