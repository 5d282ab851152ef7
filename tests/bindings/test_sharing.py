"""Pins seen from a second process; a map shared into a second object with reuse_fd."""
import os
import subprocess
import sys

import pytest

from emptcp import Map, MapCompatibilityError, ObjectSpec, Program


def test_pin_and_reopen_in_second_process(objs, pin_dir):
    with ObjectSpec(objs["basics"]).load() as o:
        counters = o.map("counters", int, int)
        counters[9] = 4242
        counters.pin(f"{pin_dir}/counters")
        o.programs["xdp_count"].pin(f"{pin_dir}/prog")
    code = ("import sys; from emptcp import Map, Program\n"
            "m = Map.from_pin(sys.argv[1] + '/counters', key=int, value=int)\n"
            "p = Program.from_pin(sys.argv[1] + '/prog')\n"
            "p.test_run(bytes(64)); print(m[9], m[0], p.name)")
    out = subprocess.run([sys.executable, "-c", code, pin_dir], capture_output=True, text=True,
                         check=True).stdout.split()
    assert out == ["4242", "1", "xdp_count"]
    # and back in this process: the second process's run is visible
    assert Map.from_pin(f"{pin_dir}/counters", key=int, value=int)[0] == 1


def test_reuse_fd_shares_between_objects(objs):
    with ObjectSpec(objs["basics"]).load() as a:
        spec = ObjectSpec(objs["sharer"])
        spec.maps["counters"].reuse(a.maps["counters"])
        with spec.load() as b:
            assert b.maps["counters"].info.id == a.maps["counters"].info.id
            b.programs["xdp_sharer"].test_run(bytes(64))
            a.programs["xdp_count"].test_run(bytes(64))
            shared = a.map("counters", int, int)
            assert shared[7] == 100 and shared[0] == 1


def test_reuse_of_incompatible_map_says_what_differs(objs):
    with ObjectSpec(objs["basics"]).load() as a:
        spec = ObjectSpec(objs["sharer"])
        with pytest.raises(MapCompatibilityError, match="type 2 != 6.*max_entries 16 != 4"):
            spec.maps["counters"].reuse(a.maps["percpu"])
        spec.close()
