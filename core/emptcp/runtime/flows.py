"""Run-time entries of set-valued selectors (docs/datapath-v2.md, section 4).

Add, remove and list the keys of an applied policy's ``tcp4tuple``, ``tcp2tuple``
or ``service`` selector without a new generation or a reload::

    flows = Flows()                                # pin root as for apply/status
    flows.add("spark-backup", [{"local_addr": "10.0.0.1", "local_port": 7077,
                                "remote_addr": "10.0.1.2", "remote_port": 40000}])
    flows.delete("spark-backup", [...])
    flows.list("spark-backup")                     # every entry, static and run-time

Each key is written with one map update, after the row of its (possibly new) class:
a packet sees a key before or after a change, never half of one. Entries are made in
the active generation; the next apply carries the run-time ones of every policy it
keeps (same name, same selector position and stage) into the new generation
(:func:`carried`). The pin root's lock serialises entry changes with applies.
"""
from __future__ import annotations

import contextlib
import struct
from dataclasses import dataclass
from typing import Any, Iterable, Mapping

from .. import abi
from ..chain.sets import PREFIX_DIMS, SetParam, service_set, tcp2tuple_set, tcp4tuple_set
from ..errors import ConfigError, EmptcpError, NotFoundError

__all__ = ["Flows", "RUNTIME_STAGES", "entries_param", "carried"]

#: stages whose entries can change at run time (exact keys and ports)
RUNTIME_STAGES = ("tcp4tuple", "tcp2tuple", "service")
_TUPLE = ("local_addr", "local_port", "remote_addr", "remote_port")


def entries_param(stage: str, entries: Iterable[Mapping[str, Any]],
                  params: Mapping[str, Any] | None = None) -> SetParam:
    """The keys of ``entries`` for a selector of ``stage`` (``params``: the selector's
    applied parameters, for ``service``'s mode)."""
    rows = [dict(e) for e in entries]
    try:
        if stage == "tcp4tuple":
            bad = [i for i, e in enumerate(rows) if set(e) != set(_TUPLE)]
            if bad:
                raise ValueError(f"entry {bad[0]} needs exactly {', '.join(_TUPLE)}")
            return tcp4tuple_set([tuple(e[k] for k in _TUPLE) for e in rows])
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


def _entry_of(dim: str, k: Any) -> dict[str, Any]:
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


@dataclass
class _Hook:
    """One hook's classification in the active generation (its description's copy)."""
    gen: int
    hook: int
    doc: dict[str, Any]                    # CompiledTables.classify[hook], updated in place

    def classes(self) -> dict[tuple[str, frozenset[int]], int]:
        return {(d, frozenset(m)): c for c, d, m in self.doc["classes"]}

    def members(self) -> dict[int, frozenset[int]]:
        return {c: frozenset(m) for c, _, m in self.doc["classes"]}

    def row(self, dim: str, member: frozenset[int]) -> int:
        bits = 0
        for r, needs in enumerate(self.doc["rules"]):
            if set(needs.get(dim, ())) <= member:
                bits |= 1 << r
        return bits


class Flows:
    """Run-time entries under one pin root (the same one ``emptcp apply`` used)."""

    def __init__(self, pin_root: str = abi.DEFAULT_PIN_ROOT) -> None:
        from .engine import Engine
        self.engine = Engine(pin_root)

    # ---- the applied policy ----------------------------------------------
    def _locate(self, doc: dict[str, Any], policy: str, selector: int | None
                ) -> tuple[int, int, int, dict[str, Any]]:
        """(hook id, policy position, selector index, selector description)."""
        for h in doc["resolved"]["hooks"]:
            for pi, p in enumerate(h["policies"]):
                if p["name"] != policy:
                    continue
                sels = p["selectors"]
                if selector is None:
                    cands = [i for i, s in enumerate(sels) if s["use"] in RUNTIME_STAGES]
                    if len(cands) != 1:
                        raise ConfigError(
                            f"policy {policy!r} has {len(cands)} selectors that take run-time "
                            f"entries ({', '.join(RUNTIME_STAGES)}): name one with --selector")
                    selector = cands[0]
                if not 0 <= selector < len(sels):
                    raise ConfigError(f"policy {policy!r} has no selector {selector} "
                                      f"(it has {len(sels)})")
                if sels[selector]["use"] not in RUNTIME_STAGES:
                    raise ConfigError(f"selector {selector} of policy {policy!r} is "
                                      f"{sels[selector]['use']!r}: only "
                                      f"{', '.join(RUNTIME_STAGES)} take run-time entries")
                return doc["hook_ids"][h["name"]], pi, selector, sels[selector]
        raise ConfigError(f"no policy {policy!r} is applied under {self.engine.pins.root}")

    def _active(self) -> tuple[int, dict[str, Any]]:
        current = self.engine.state()
        if current is None:
            raise EmptcpError(f"nothing is applied under {self.engine.pins.root}")
        return current

    def stage_of(self, policy: str, selector: int | None = None) -> str:
        """The stage (tcp4tuple, tcp2tuple, service) of the selector entries go to."""
        _, doc = self._active()
        return self._locate(doc, policy, selector)[3]["use"]

    # ---- changes -----------------------------------------------------------
    def add(self, policy: str, entries: Iterable[Mapping[str, Any]],
            selector: int | None = None) -> int:
        """Add ``entries`` to a selector of the applied ``policy``; returns how many
        keys were written."""
        return self._change(policy, entries, selector, add=True)

    def delete(self, policy: str, entries: Iterable[Mapping[str, Any]],
               selector: int | None = None) -> int:
        """Remove ``entries`` (absent ones are ignored); returns how many keys changed."""
        return self._change(policy, entries, selector, add=False)

    def _change(self, policy: str, entries: Iterable[Mapping[str, Any]],
                selector: int | None, add: bool) -> int:
        from .pinroot import locked
        entries = list(entries)
        with locked(self.engine.pins):
            gen, doc = self._active()
            hook, pi, si, sel = self._locate(doc, policy, selector)
            param = entries_param(sel["use"], entries, sel["params"])
            written = doc["written"]
            cdoc = written["classify"][str(hook)]
            owner = cdoc["owners"][f"{pi}/{si}"]
            h = _Hook(gen, hook, cdoc)
            n = 0
            with contextlib.ExitStack() as st:
                maps = {name: st.enter_context(self.engine._shared(name)) for name in
                        ("emptcp_keys", "emptcp_ports", "emptcp_rows")}
                for alt in param.alternatives:
                    for dim, keys in alt:
                        n += self._apply_dim(maps, h, written, dim, owner[dim], keys, add)
            from .engine import write_meta
            write_meta(self.engine.pins.gen(gen), doc)
            return n

    def _new_class(self, maps: Mapping[str, Any], h: _Hook, written: dict[str, Any],
                   index: dict, dim: str, member: frozenset[int]) -> int:
        """The class of ``member`` in ``dim``: interned, its row written first."""
        if not member:
            return 0
        cls = index.get((dim, member))
        if cls is not None:
            return cls
        cls = written["rows"] + 1
        if cls >= abi.MAX_CLASSES:
            raise EmptcpError(f"no free key class in generation {h.gen} (at most "
                              f"{abi.MAX_CLASSES - 1})")
        maps["emptcp_rows"].put(abi.row_index(h.gen, cls).to_bytes(4, "little"),
                                abi.pack_rules(h.row(dim, member)))
        written["rows"] = cls
        h.doc["classes"].append([cls, dim, sorted(member)])
        index[(dim, member)] = cls
        return cls

    def _apply_dim(self, maps: Mapping[str, Any], h: _Hook, written: dict[str, Any], dim: str,
                   sid: int, keys: Iterable[Any], add: bool) -> int:
        from ..chain.compiler import _pack_key
        index, members = h.classes(), h.members()
        if dim in PREFIX_DIMS:
            raise ConfigError("prefix selectors (ip_pair) take no run-time entries")
        if dim in ("lport", "rport"):
            table = maps["emptcp_ports"]
            base = h.doc["port_table"] << 16
            idx = [base + k for k in keys]
            raw = b"".join(table.lookup(i.to_bytes(4, "little")) for i in idx)
            out = []
            for i, pos in enumerate(idx):
                lc, rc = abi.PORT_CLASS.unpack_from(raw, 4 * i)
                cur = lc if dim == "lport" else rc
                member = members.get(cur, frozenset())
                member = member | {sid} if add else member - {sid}
                cls = self._new_class(maps, h, written, index, dim, member)
                members[cls] = member
                out.append((pos, abi.PORT_CLASS.pack(cls, rc) if dim == "lport"
                            else abi.PORT_CLASS.pack(lc, cls)))
            if out:
                table.update_batch_packed(struct.pack(f"{len(out)}I", *(p for p, _ in out)),
                                          b"".join(v for _, v in out))
            return len(out)
        table = maps["emptcp_keys"]
        puts, dels = [], []
        for k in keys:
            raw = _pack_key(h.gen, h.hook, dim, k)
            try:
                cur = abi.CLASS.unpack(table.lookup(raw))[0]
            except NotFoundError:
                cur = 0
            member = members.get(cur, frozenset())
            member = member | {sid} if add else member - {sid}
            if not member:
                if cur:
                    dels.append(raw)
                continue
            cls = self._new_class(maps, h, written, index, dim, member)
            members[cls] = member
            if cls != cur:
                puts.append((raw, abi.CLASS.pack(cls)))
        if puts:
            try:
                table.update_batch(puts)
            except EmptcpError as e:
                raise EmptcpError(f"adding {len(puts)} entries: {e} (emptcp_keys holds "
                                  f"{abi.MAX_KEYS} keys over all hooks and generations)") from e
        if dels:
            table.delete_batch(dels)
        return len(puts) + len(dels)

    # ---- reading -----------------------------------------------------------
    def list(self, policy: str, selector: int | None = None) -> list[dict[str, Any]]:
        """Every entry of the selector in the active generation (static and run-time)."""
        gen, doc = self._active()
        hook, pi, si, _ = self._locate(doc, policy, selector)
        cdoc = doc["written"]["classify"][str(hook)]
        owner = cdoc["owners"][f"{pi}/{si}"]
        with contextlib.ExitStack() as st:
            maps = {n: st.enter_context(self.engine._shared(n))
                    for n in ("emptcp_keys", "emptcp_ports")}
            found = _keys_of(maps, gen, hook, cdoc)
        out = []
        for dim, sid in owner.items():
            out += [_entry_of(dim, k) for k, member in found.get(dim, {}).items() if sid in member]
        if "port" in (out[0] if out else {}):      # service: each port once (lport and rport)
            out = [dict(t) for t in sorted({tuple(e.items()) for e in out})]
        return out


_DIM_NAMES = {0: "flow", 1: "ports", 2: "addrs", 3: "laddr", 4: "raddr", 5: "lport", 6: "rport"}


def _keys_of(maps: Mapping[str, Any], gen: int, hook: int, cdoc: dict[str, Any]
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
                    found = _keys_of(maps, gen, doc["hook_ids"][h["name"]], cdoc)
                had = {d: e for alt in static[(p["name"], si)].alternatives for d, e in alt}
                extra = {d: {k for k, m in found.get(d, {}).items() if sid in m} - had.get(d, set())
                         for d, sid in owner.items()}
                extra = {d: ks for d, ks in extra.items() if ks}
                if extra:
                    out[(p["name"], si, s["use"])] = extra
    return out
