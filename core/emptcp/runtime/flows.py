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
(:func:`emptcp.runtime.entries.carried`). The pin root's lock serialises entry changes
with applies.
"""
from __future__ import annotations

import contextlib
import struct
from dataclasses import dataclass
from typing import Any, Iterable, Mapping

from .. import DEFAULT_PIN_ROOT, abi
from ..chain.sets import PREFIX_DIMS
from ..errors import ConfigError, EmptcpError
from .entries import RUNTIME_STAGES, entries_param, entry_of, keys_of

__all__ = ["Flows"]


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

    def __init__(self, pin_root: str = DEFAULT_PIN_ROOT) -> None:
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
            vals = table.lookup_many([i.to_bytes(4, "little") for i in idx])
            out = []
            for pos, val in zip(idx, vals):
                lc, rc = abi.PORT_CLASS.unpack(val[:abi.PORT_CLASS.size])  # type: ignore[index]
                cur = lc if dim == "lport" else rc
                member = members.get(cur, frozenset())
                member = member | {sid} if add else member - {sid}
                cls = self._new_class(maps, h, written, index, dim, member)
                members[cls] = member
                if cls != cur:
                    out.append((pos, abi.PORT_CLASS.pack(cls, rc) if dim == "lport"
                                else abi.PORT_CLASS.pack(lc, cls)))
            if out:
                table.update_batch_packed(struct.pack(f"{len(out)}I", *(p for p, _ in out)),
                                          b"".join(v for _, v in out))
            return len(out)
        table = maps["emptcp_keys"]
        puts, dels = [], []
        raws = [_pack_key(h.gen, h.hook, dim, k) for k in keys]
        moved: dict[int, int] = {}          # current class -> class after the change
        for raw, val in zip(raws, table.lookup_many(raws)):
            cur = int.from_bytes(val[:4], "little") if val is not None else 0
            cls = moved.get(cur)
            if cls is None:
                member = members.get(cur, frozenset())
                member = member | {sid} if add else member - {sid}
                cls = self._new_class(maps, h, written, index, dim, member)
                members[cls] = member
                moved[cur] = cls
            if cls == cur:
                continue
            if cls == 0:
                dels.append(raw)
            else:
                puts.append((raw, abi.CLASS.pack(cls)))
        if puts:
            try:
                table.update_batch_packed(b"".join(k for k, _ in puts),
                                          b"".join(v for _, v in puts))
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
            found = keys_of(maps, gen, hook, cdoc)
        out = []
        for dim, sid in owner.items():
            out += [entry_of(dim, k) for k, member in found.get(dim, {}).items() if sid in member]
        if "port" in (out[0] if out else {}):      # service: each port once (lport and rport)
            out = [dict(t) for t in sorted({tuple(e.items()) for e in out})]
        return out


