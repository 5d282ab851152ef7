"""Map element and batch operations through emptcp's typed ``Map`` vs bpftool.

One map: ``bench_hash`` (BPF_MAP_TYPE_HASH, key u32, value u64), filled with N
keys 0..N-1 (10000; 1000 with --quick). One op = one element. Each round runs
emptcp and the baselines back to back; the figure is the median over rounds.
Every round's output is checked (values read back, map contents after writes),
outside the timed region.
"""
from __future__ import annotations

import contextlib
import os
import sys
from typing import Iterator

from ._util import bench_object_path, bpftool, hexbytes, median, parse_json, timed
from .registry import Context, Result, benchmark

MAP = "bench_hash"
KEY_SIZE, VALUE_SIZE = 4, 8


def _sizes(ctx: Context) -> tuple[int, int, int]:
    """(elements, rounds, per-process sample size)."""
    return ctx.pick(10000, 1000), ctx.pick(5, 1), ctx.pick(200, 10)


def _value(k: int) -> int:
    return k * 3 + 1


def _key_hex(k: int) -> list[str]:
    return hexbytes(k.to_bytes(KEY_SIZE, sys.byteorder))


def _value_hex(v: int) -> list[str]:
    return hexbytes(v.to_bytes(VALUE_SIZE, sys.byteorder))


def _decode(hex_list: list[str]) -> int:
    return int.from_bytes(bytes(int(x, 16) for x in hex_list), sys.byteorder)


@contextlib.contextmanager
def _hash_map(ctx: Context, n: int) -> Iterator:
    from emptcp import ObjectSpec
    spec = ObjectSpec(bench_object_path(ctx))
    spec.maps[MAP].max_entries = max(n, spec.maps[MAP].max_entries)
    with spec.load() as obj:
        yield obj.map(MAP, int, int)


def _write_lines(ctx: Context, name: str, lines: list[str]) -> str:
    path = os.path.join(ctx.tmpdir, name)
    with open(path, "w") as f:
        f.write("\n".join(lines) + "\n")
    return path


def _sample(keys: list[int], size: int) -> list[int]:
    step = max(1, len(keys) // size)
    return keys[::step][:size]


def _check_contents(m, expected: dict[int, int], what: str) -> None:
    got = dict(m.lookup_batch())
    if got != expected:
        missing = len(set(expected) - set(got))
        wrong = sum(1 for k in expected if k in got and got[k] != expected[k])
        raise AssertionError(f"{what}: map has {len(got)} entries, {missing} missing, "
                             f"{wrong} wrong values (expected {len(expected)})")


def _update_lines(map_id: int, keys: list[int]) -> list[str]:
    return [f"map update id {map_id} key hex {' '.join(_key_hex(k))} "
            f"value hex {' '.join(_value_hex(_value(k)))}" for k in keys]


@benchmark("map.lookup")
def map_lookup(ctx: Context) -> list[Result]:
    n, rounds, sample = _sizes(ctx)
    keys = list(range(n))
    expected = [_value(k) for k in keys]
    with _hash_map(ctx, n) as m:
        m.update_batch(zip(keys, expected))
        mid = m.info.id
        batch_file = _write_lines(ctx, "lookup.batch", [
            f"map lookup id {mid} key hex {' '.join(_key_hex(k))}" for k in keys])
        skeys = _sample(keys, sample)
        ours, per_proc, batch = [], [], []
        for _ in range(rounds):
            get = m.lookup
            dt, out = timed(lambda: [get(k) for k in keys])
            if out != expected:
                raise AssertionError("emptcp lookups returned wrong values")
            ours.append(dt / n)

            dt, outs = timed(lambda: [bpftool("-j", "map", "lookup", "id", mid, "key", "hex",
                                              *_key_hex(k)) for k in skeys])
            if [_decode(parse_json(o)["value"]) for o in outs] != [_value(k) for k in skeys]:
                raise AssertionError("bpftool map lookup returned wrong values")
            per_proc.append(dt / len(skeys))

            dt, text = timed(lambda: bpftool("-j", "batch", "file", batch_file))
            entries = parse_json(text)
            if [_decode(e["output"]["value"]) for e in entries] != expected:
                raise AssertionError("bpftool batch lookups returned wrong values")
            batch.append(dt / n)
    desc = f"lookup of one element of a {n}-entry hash map (u32 -> u64), typed Map[key]"
    return [
        Result("map.lookup:process", median(ours) * 1e6, "µs/op",
               f"bpftool -j map lookup, 1 process per element ({len(skeys)} sampled)",
               median(per_proc) * 1e6, desc),
        Result("map.lookup:batchfile", median(ours) * 1e6, "µs/op",
               f"bpftool -j batch file, 1 process, {n} 'map lookup' lines",
               median(batch) * 1e6, desc),
    ]


@benchmark("map.update")
def map_update(ctx: Context) -> list[Result]:
    n, rounds, sample = _sizes(ctx)
    keys = list(range(n))
    pairs = [(k, _value(k)) for k in keys]
    full = dict(pairs)
    with _hash_map(ctx, n) as m:
        mid = m.info.id
        batch_file = _write_lines(ctx, "update.batch", _update_lines(mid, keys))
        skeys = _sample(keys, sample)
        ours, per_proc, batch = [], [], []
        for _ in range(rounds):
            m.clear()
            put = m.put
            dt, _ = timed(lambda: [put(k, v) for k, v in pairs])
            _check_contents(m, full, "emptcp Map[key] = value")
            ours.append(dt / n)

            m.clear()
            dt, _ = timed(lambda: [bpftool("map", "update", "id", mid, "key", "hex", *_key_hex(k),
                                           "value", "hex", *_value_hex(_value(k))) for k in skeys])
            _check_contents(m, {k: _value(k) for k in skeys}, "bpftool map update")
            per_proc.append(dt / len(skeys))

            m.clear()
            dt, _ = timed(lambda: bpftool("batch", "file", batch_file))
            _check_contents(m, full, "bpftool batch file (map update)")
            batch.append(dt / n)
    desc = f"insert of one new element into an empty hash map, {n} in all, typed Map[key] = value"
    return [
        Result("map.update:process", median(ours) * 1e6, "µs/op",
               f"bpftool map update, 1 process per element ({len(skeys)} sampled)",
               median(per_proc) * 1e6, desc),
        Result("map.update:batchfile", median(ours) * 1e6, "µs/op",
               f"bpftool batch file, 1 process, {n} 'map update' lines",
               median(batch) * 1e6, desc),
    ]


@benchmark("map.update_batch")
def map_update_batch(ctx: Context) -> list[Result]:
    n, rounds, _ = _sizes(ctx)
    keys = list(range(n))
    pairs = [(k, _value(k)) for k in keys]
    full = dict(pairs)
    with _hash_map(ctx, n) as m:
        batch_file = _write_lines(ctx, "update_batch.batch", _update_lines(m.info.id, keys))
        ours, batch = [], []
        for _ in range(rounds):
            m.clear()
            dt, count = timed(lambda: m.update_batch(pairs))
            if count != n:
                raise AssertionError(f"update_batch reported {count} of {n}")
            _check_contents(m, full, "emptcp Map.update_batch")
            ours.append(dt / n)

            m.clear()
            dt, _ = timed(lambda: bpftool("batch", "file", batch_file))
            _check_contents(m, full, "bpftool batch file (map update)")
            batch.append(dt / n)
    return [Result("map.update_batch:batchfile", median(ours) * 1e6, "µs/op",
                   f"bpftool batch file, 1 process, {n} 'map update' lines",
                   median(batch) * 1e6,
                   f"{n} new elements inserted by one Map.update_batch call "
                   "(one bpf_map_update_batch syscall, int codecs), per element")]


@benchmark("map.read_all")
def map_read_all(ctx: Context) -> list[Result]:
    n, rounds, _ = _sizes(ctx)
    full = {k: _value(k) for k in range(n)}
    with _hash_map(ctx, n) as m:
        m.update_batch(full.items())
        mid = m.info.id
        batched, walked, dump = [], [], []
        for _ in range(rounds):
            dt, out = timed(lambda: m.lookup_batch())
            if dict(out) != full or len(out) != n:
                raise AssertionError("Map.lookup_batch returned wrong contents")
            batched.append(dt / n)

            dt, out = timed(lambda: m.items())
            if dict(out) != full or len(out) != n:
                raise AssertionError("Map.items returned wrong contents")
            walked.append(dt / n)

            dt, text = timed(lambda: bpftool("-j", "map", "dump", "id", mid))
            entries = parse_json(text)
            if {_decode(e["key"]): _decode(e["value"]) for e in entries} != full:
                raise AssertionError("bpftool map dump returned wrong contents")
            dump.append(dt / n)
    baseline = "bpftool -j map dump, 1 process (JSON text, not parsed)"
    return [
        Result("map.read_all.lookup_batch:dump", median(batched) * 1e6, "µs/op", baseline,
               median(dump) * 1e6,
               f"full read of a {n}-entry hash map with Map.lookup_batch() "
               "(1024 per syscall, decoded to ints), per element"),
        Result("map.read_all.items:dump", median(walked) * 1e6, "µs/op", baseline,
               median(dump) * 1e6,
               f"full read of a {n}-entry hash map with Map.items() "
               "(get_next_key + lookup per element, decoded to ints), per element"),
    ]
