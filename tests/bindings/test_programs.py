"""Programs under BPF_PROG_TEST_RUN: verdicts, tail calls through a PROG_ARRAY, data_meta."""
import struct

from emptcp import ObjectSpec, XdpAction

PKT = bytes(range(64))


def test_test_run_counts_and_repeat(objs):
    with ObjectSpec(objs["basics"]).load() as o:
        r = o.programs["xdp_count"].test_run(PKT, repeat=100)
        assert r.retval == XdpAction.PASS and r.data == PKT
        assert o.map("counters", int, int)[0] == 100
        assert r.duration_ns >= 0


def test_tail_call_reads_back_data_meta(objs):
    with ObjectSpec(objs["basics"]).load() as o:
        jump = o.map("jump", int, int)
        r = o.programs["xdp_entry"].test_run(PKT)   # empty prog array: the tail call misses
        assert r.retval == XdpAction.DROP and o.map("counters", int, int)[1] == 1
        jump[0] = o.programs["xdp_target"].fd
        r = o.programs["xdp_entry"].test_run(PKT)
        assert r.retval == XdpAction.TX             # the target's verdict
        assert struct.unpack("I", r.meta) == (0x22222222,)
        assert r.data == PKT
        assert o.map("counters", int, int)[2] == 1
        assert dict(jump.items()) == {0: o.programs["xdp_target"].id}  # reads back prog ids
        del jump[0]
        assert o.programs["xdp_entry"].test_run(PKT).retval == XdpAction.DROP


def test_tc_test_run_returns_cb(objs):
    with ObjectSpec(objs["basics"]).load() as o:
        r = o.programs["tc_count_egress"].test_run(PKT)
        assert r.retval == 0
        assert struct.unpack_from("I", r.cb)[0] == 0xABCD


def test_spec_adjustments_before_load(objs):
    spec = ObjectSpec(objs["basics"])
    spec.maps["hash_map"].max_entries = 77
    spec.programs["xdp_events"].autoload = False
    with spec.load() as o:
        assert o.maps["hash_map"].info.max_entries == 77
        assert "xdp_events" not in o.programs
