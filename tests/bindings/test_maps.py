"""Map operations on a real kernel: typed keys, iteration, per-CPU values, LPM, batches."""
import ctypes
import socket
import struct

import pytest

from emptcp import BPF_NOEXIST, KeyNotFoundError, Map, MapKeyError, ObjectSpec
from emptcp.errors import BpfError
from emptcp.bpf.libbpf import num_possible_cpus


class Pair(ctypes.Structure):
    _fields_ = [("a", ctypes.c_uint32), ("b", ctypes.c_uint16), ("c", ctypes.c_uint16)]


class LpmV4(ctypes.Structure):
    _fields_ = [("prefixlen", ctypes.c_uint32), ("addr", ctypes.c_uint8 * 4)]


@pytest.fixture
def obj(objs):
    with ObjectSpec(objs["basics"]).load() as o:
        yield o


def test_hash_typed_keys_update_lookup_iterate_delete(obj):
    m = obj.map("hash_map", key=Pair, value=ctypes.c_uint64)
    m[Pair(1, 2, 3)] = 10
    m[(4, 5, 6)] = 20                              # tuples build the Structure
    assert m[Pair(1, 2, 3)] == 10
    assert Pair(4, 5, 6) in m and Pair(9, 9, 9) not in m
    assert sorted((k.a, v) for k, v in m.items()) == [(1, 10), (4, 20)]
    with pytest.raises(BpfError):
        m.put(Pair(1, 2, 3), 11, BPF_NOEXIST)
    del m[Pair(1, 2, 3)]
    with pytest.raises(KeyNotFoundError):
        m[Pair(1, 2, 3)]
    with pytest.raises(KeyError):                  # also a KeyError, as a mapping should
        del m[Pair(1, 2, 3)]
    assert len(m) == 1


def test_struct_format_codec_and_iteration_survives_deletion(obj):
    m = obj.map("hash_map", key="IHH", value="Q")
    for i in range(100):
        m[(i, 1, 2)] = i * i
    seen = []
    for k in m:                                     # delete while walking
        seen.append(k[0])
        m.pop(k)
    assert sorted(seen) == list(range(100))
    assert len(m) == 0


def test_array_and_percpu(obj):
    arr = obj.map("counters", int, int)
    assert len(arr) == 16 and arr[5] == 0
    arr[5] = 123
    assert arr[5] == 123
    pc = obj.map("percpu", int, int)
    n = num_possible_cpus()
    assert pc[0] == [0] * n
    pc[1] = list(range(n))
    assert pc[1] == list(range(n))
    pc[2] = 7                                       # one value written to every CPU
    assert pc[2] == [7] * n
    with pytest.raises(MapKeyError):
        pc[3] = [1] * (n + 1)


def test_lpm_longest_prefix(obj):
    m = obj.map("lpm", key=LpmV4, value=int)

    def key(prefix, addr):
        return LpmV4(prefix, (ctypes.c_uint8 * 4)(*socket.inet_aton(addr)))
    m[key(8, "10.0.0.0")] = 1
    m[key(24, "10.1.2.0")] = 2
    assert m[key(32, "10.1.2.3")] == 2
    assert m[key(32, "10.9.9.9")] == 1
    with pytest.raises(KeyNotFoundError):
        m[key(32, "11.0.0.1")]


def test_batch_update_lookup_delete(obj):
    m = obj.map("hash_map", key="IHH", value="Q")
    items = [((i, 0, 0), i + 1) for i in range(3000)]
    assert m.update_batch(items) == 3000
    got = dict(m.lookup_batch(chunk=256))
    assert got == dict(items)
    assert m.delete_batch([k for k, _ in items[:1000]]) == 1000
    assert len(m.lookup_batch()) == 2000
    pc = obj.map("percpu", int, int)
    assert len(pc.lookup_batch()) == 4


def test_wrong_key_size_is_a_typed_error(obj):
    m = obj.map("counters")                         # raw bytes codec
    with pytest.raises(MapKeyError, match="key is 8 bytes, map expects 4"):
        m[b"\0" * 8]
    with pytest.raises(MapKeyError, match="key type is 8 bytes"):
        obj.map("counters", key="Q")
    with pytest.raises(MapKeyError):
        obj.map("counters", int, int)[2 ** 40]       # does not fit


def test_map_create_standalone(root):
    with Map.create(1, 4, 8, 16, name="standalone", key=int, value=int) as m:
        m[1] = 2
        assert m.info.name == "standalone" and dict(m.items()) == {1: 2}


def test_discard_says_whether_the_key_was_there(root):
    with Map.create(1, 4, 8, 16, name="discard", key=int, value=int) as m:
        m[1] = 2
        assert m.discard(1) is True
        assert m.discard(1) is False
        assert dict(m.items()) == {}
