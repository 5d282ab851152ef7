"""Action program instances (docs/abi.md 1.1): each action is a program loaded with its
parameter and its successor's prog-array key in frozen .rodata.

What must hold, checked in the kernel (BPF_PROG_TEST_RUN) with independent oracles
(scapy decodes the packet; libbpf itself reads the JIT image; bpftool lists prog ids):
a chain runs every action once, in order; policies that share instances do not count
for each other; the successor tail call is a direct jump; instances are reused while
some generation uses them and freed when none does.
"""
from __future__ import annotations

import ctypes
import json
import platform
import struct
import subprocess
import time

import pytest
from scapy.layers.inet import TCP
from scapy.layers.l2 import Ether

from emptcp import abi
from emptcp.chain.compiler import (HookPolicies, PolicySpec, StageRef, encode_service,
                                   encode_tcp_opt_add)
from emptcp.runtime.generation import PROG_ARRAYS

from .conftest import HOOK_TC_EG, HOOK_TC_IN, HOOK_XDP, TC_NEXT, XDP_PASS
from .helpers import ACT, apply, run, stat, tcp4

KINDS = [("xdp", HOOK_XDP, XDP_PASS), ("tc-ingress", HOOK_TC_IN, TC_NEXT)]


def marker(n: int) -> bytes:
    """An experimental TCP option (kind 253) carrying ``n``: which action added it."""
    return bytes([253, 4, n, n])


def add_opt(n: int) -> StageRef:
    return StageRef("tcp_opt_add", encode_tcp_opt_add(marker(n)))


def markers(frame: bytes) -> list[int]:
    """The marker options of ``frame``, in header order (scapy decodes)."""
    return [o[1][1] for o in Ether(frame)[TCP].options
            if isinstance(o[0], int) and o[0] == 253 and isinstance(o[1], bytes)]


def prog_array_entries(dp, htype: str) -> dict[int, int]:
    """{key: prog id} of the instance region, as bpftool dumps the prog array."""
    info = dp.maps[PROG_ARRAYS[htype]].info
    out = subprocess.run(["bpftool", "-j", "map", "dump", "id", str(info.id)],
                         capture_output=True, text=True, check=True).stdout
    entries = {}
    for e in json.loads(out):
        key = e["formatted"]["key"] if "formatted" in e else struct.unpack(
            "<I", bytes(int(b, 16) for b in e["key"]))[0]
        value = e["formatted"]["value"] if "formatted" in e else struct.unpack(
            "<I", bytes(int(b, 16) for b in e["value"]))[0]
        if key >= abi.INSTANCE_BASE:
            entries[key] = value
    return entries


def prog_alive(prog_id: int) -> bool:
    return subprocess.run(["bpftool", "prog", "show", "id", str(prog_id)],
                          capture_output=True).returncode == 0


def wait_freed(prog_ids, timeout: float = 5.0) -> set[int]:
    """Prog ids still loaded after ``timeout`` (programs go after an RCU grace period)."""
    alive = set(prog_ids)
    deadline = time.monotonic() + timeout
    while alive and time.monotonic() < deadline:
        alive = {i for i in alive if prog_alive(i)}
        if alive:
            time.sleep(0.1)
    return alive


@pytest.mark.parametrize("kind,hook,undecided", KINDS)
def test_chain_runs_each_action_once_in_order(dp, kind, hook, undecided):
    """Three option-adding actions, then count: the packet carries the three options in
    chain order, each once (a skipped, repeated or reordered action changes the list),
    and each position counted one packet."""
    sel = [StageRef("service", encode_service([80]))]
    apply(dp, 1, [HookPolicies(hook, kind, [
        PolicySpec(sel, [add_opt(1), add_opt(2), add_opt(3), StageRef("count")])])])
    res = run(dp, kind, tcp4())
    assert res.retval == undecided
    assert markers(res.data) == [1, 2, 3]
    for si in range(4):
        assert stat(dp, hook, 0, ACT, si)["packets"] == 1, si
    assert stat(dp, hook, 0, ACT, 4)["packets"] == 0
    hs = dp.hook_stats(hook)
    assert (hs["missed_tail_calls"], hs["errors"]) == (0, 0)


@pytest.mark.parametrize("kind,hook,undecided", KINDS)
def test_shared_suffix_does_not_cross_count(dp, kind, hook, undecided):
    """Policy 0 = [opt 1, opt 2, count] and policy 1 = [opt 2, count] share the
    instances of their common suffix; each packet counts only on its own policy."""
    htype = "xdp" if kind == "xdp" else "tc"
    apply(dp, 1, [HookPolicies(hook, kind, [
        PolicySpec([StageRef("service", encode_service([80]))],
                   [add_opt(1), add_opt(2), StageRef("count")]),
        PolicySpec([StageRef("service", encode_service([22]))],
                   [add_opt(2), StageRef("count")]),
    ])])
    assert len(dp.plans[1].instances[htype]) == 3          # 5 actions, 3 instances
    res = run(dp, kind, tcp4(dport=22))
    assert res.retval == undecided and markers(res.data) == [2]
    assert [stat(dp, hook, 1, ACT, s)["packets"] for s in range(3)] == [1, 1, 0]
    assert [stat(dp, hook, 0, ACT, s)["packets"] for s in range(3)] == [0, 0, 0]
    res = run(dp, kind, tcp4(dport=80))
    assert markers(res.data) == [1, 2]
    assert [stat(dp, hook, 0, ACT, s)["packets"] for s in range(3)] == [1, 1, 1]
    assert [stat(dp, hook, 1, ACT, s)["packets"] for s in range(3)] == [1, 1, 0]
    assert dp.hook_stats(hook)["missed_tail_calls"] == 0


def test_hooks_sharing_instances_count_apart(unfused):
    dp = unfused
    """tc-ingress and tc-egress run the same instances (one TC prog array); counters
    stay per hook."""
    chain = [PolicySpec([], [StageRef("count"), StageRef("count")])]
    apply(dp, 1, [HookPolicies(HOOK_TC_IN, "tc-ingress", chain),
                  HookPolicies(HOOK_TC_EG, "tc-egress", chain)])
    assert len(dp.plans[1].instances["tc"]) == 2
    for _ in range(3):
        run(dp, "tc-egress", tcp4())
    run(dp, "tc-ingress", tcp4())
    assert [stat(dp, HOOK_TC_EG, 0, ACT, s)["packets"] for s in range(2)] == [3, 3]
    assert [stat(dp, HOOK_TC_IN, 0, ACT, s)["packets"] for s in range(2)] == [1, 1]


# ---- the successor key is a constant: a direct jump in the JIT image ---------------
# x86-64 JIT of a tail call with a run-time key: after the bounds check it loads
# array->ptrs[index] with `mov rcx, [rsi + rdx*8 + off32]` (48 8b 8c d6); a constant
# key is a patched direct jump with no such load (arch/x86/net/bpf_jit_comp.c)
_INDIRECT_TAIL_CALL = bytes.fromhex("488b8cd6")
_libbpf = ctypes.CDLL("libbpf.so.1", use_errno=True)


def jited_image(prog_id: int) -> bytes:
    """The JIT image of a program, read with libbpf's bpf_obj_get_info_by_fd."""
    import os
    fd = _libbpf.bpf_prog_get_fd_by_id(prog_id)
    assert fd >= 0, f"prog {prog_id}: {os.strerror(-fd)}"
    try:
        info = ctypes.create_string_buffer(232)          # struct bpf_prog_info (6.x UAPI)
        size = ctypes.c_uint32(len(info))
        assert _libbpf.bpf_obj_get_info_by_fd(fd, info, ctypes.byref(size)) == 0
        n, = struct.unpack_from("I", info.raw, 16)       # jited_prog_len
        image = ctypes.create_string_buffer(n)
        info = ctypes.create_string_buffer(232)
        struct.pack_into("IIQ", info, 16, n, 0, ctypes.addressof(image))  # jited_prog_insns
        size = ctypes.c_uint32(len(info))
        assert _libbpf.bpf_obj_get_info_by_fd(fd, info, ctypes.byref(size)) == 0
        return image.raw[:n]
    finally:
        os.close(fd)


@pytest.mark.skipif(platform.machine() != "x86_64", reason="x86-64 JIT byte pattern")
@pytest.mark.parametrize("kind,hook,undecided", KINDS)
def test_successor_tail_call_is_direct(dp, kind, hook, undecided):
    htype = "xdp" if kind == "xdp" else "tc"
    apply(dp, 1, [HookPolicies(hook, kind, [
        PolicySpec([], [StageRef("count"), add_opt(1), StageRef("count")])])])
    ids = prog_array_entries(dp, htype)
    chained = [i for i in dp.plans[1].instances[htype].values() if i.consts.next_key]
    assert len(chained) == 2
    for inst in chained:
        image = jited_image(ids[inst.key])
        assert _INDIRECT_TAIL_CALL not in image, f"{inst.stage}: run-time tail-call key"
    # the control: the entry computes its key at run time, and the pattern shows there
    assert _INDIRECT_TAIL_CALL in jited_image(dp.entry[kind].info.id)
    assert run(dp, kind, tcp4()).retval == undecided


def test_instances_reused_then_freed(unfused):
    """An unchanged chain keeps its loaded instances across generations; instances no
    written generation uses leave the prog array and the kernel."""
    dp = unfused
    keep = PolicySpec([], [StageRef("count"), StageRef("count")])
    extra = PolicySpec([StageRef("service", encode_service([22]))], [add_opt(7), StageRef("count")])
    apply(dp, 1, [HookPolicies(HOOK_XDP, "xdp", [keep])])
    apply(dp, 2, [HookPolicies(HOOK_XDP, "xdp", [keep])])
    apply(dp, 3, [HookPolicies(HOOK_XDP, "xdp", [keep])])
    before = prog_array_entries(dp, "xdp")
    assert len(before) == 2
    apply(dp, 2, [HookPolicies(HOOK_XDP, "xdp", [extra, keep])])
    during = prog_array_entries(dp, "xdp")
    assert {k: during[k] for k in before} == before         # the same programs, not reloaded
    added = set(during) - set(before)
    assert len(added) == 1     # opt 7 -> the existing count instance (shared suffix)
    assert markers(run(dp, "xdp", tcp4(dport=22)).data) == [7]
    apply(dp, 2, [HookPolicies(HOOK_XDP, "xdp", [keep])])
    after = prog_array_entries(dp, "xdp")
    assert after == before
    assert not wait_freed({during[k] for k in added})


def test_first_action_beyond_the_entry_switch(dp):
    """A policy whose first action has a key the entry's switch does not cover (more
    than 256 first actions in use) is entered through the run-time key, and runs."""
    from emptcp.bpf.pinning import ObjectDescription, open_object
    hooks = [HookPolicies(HOOK_XDP, "xdp", [PolicySpec([], [StageRef("count")])])]
    apply(dp, 1, hooks)
    src = dp.sources[("count", "xdp")]
    key = abi.instance_key(300)
    assert key - abi.INSTANCE_BASE >= 256
    obj, _ = open_object(ObjectDescription(src.path), maps=dp.maps, autoload=[src.program],
                         consts={abi.INSTANCE_VAR: abi.Instance().pack()})
    progs = dp.maps[PROG_ARRAYS["xdp"]]
    with obj:
        progs.put(key.to_bytes(4, "little"), obj.programs[src.program].fd.to_bytes(4, "little"))
    try:
        dp.writer.write(1, hooks, {(t, n): s for (n, t), s in dp.slots.items()},
                        {(HOOK_XDP, 0): key})
        assert run(dp, "xdp", tcp4()).retval == XDP_PASS
        assert stat(dp, HOOK_XDP, 0, ACT, 0)["packets"] == 1
        assert dp.hook_stats(HOOK_XDP)["missed_tail_calls"] == 0
    finally:
        progs.delete(key.to_bytes(4, "little"))
        apply(dp, 1, hooks)


def test_first_actions_take_the_low_numbers(dp):
    """First actions get the numbers the entry's switch covers; the others come after
    (emptying a low key costs an RCU grace period per program that jumps there)."""
    apply(dp, 1, [HookPolicies(HOOK_XDP, "xdp", [
        PolicySpec([StageRef("service", encode_service([80]))], [add_opt(1), add_opt(2)]),
        PolicySpec([], [add_opt(3), add_opt(2)])])])
    numbers = {i.stage + str(i.consts.blob[3] if i.consts.ref else ""): i.number
               for i in dp.plans[1].instances["xdp"].values()}
    assert numbers["tcp_opt_add1"] < 256 and numbers["tcp_opt_add3"] < 256
    assert numbers["tcp_opt_add2"] >= 256
