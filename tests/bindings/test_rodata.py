"""Global constants set before load (MapSpec.initial_value / set_variable,
ObjectSpec.set_const): how a stage instance gets its successor's tail-call key as a
constant the verifier knows (docs/datapath-v2.md section 3)."""
from __future__ import annotations

import pytest

from emptcp import ObjectSpec, XdpAction

PKT = bytes(64)


def test_rodata_variables_are_listed_and_set(objs):
    with ObjectSpec(objs["rodata"]) as spec:
        rodata = next(m for m in spec.maps.values() if m.name.endswith(".rodata"))
        layout = rodata.variables()
        assert set(layout) == {"verdict", "next_key", "tag"}
        assert layout["verdict"][1] == 4 and layout["tag"][1] == 4
        spec.set_const("verdict", XdpAction.DROP)
        spec.set_const("tag", b"\x02\0\0\0")
        off, size = layout["verdict"]
        assert rodata.initial_value[off:off + size] == int(XdpAction.DROP).to_bytes(4, "little")
        with pytest.raises(KeyError, match="no .rodata variable 'nope'"):
            spec.set_const("nope", 1)
        with pytest.raises(ValueError, match="4 bytes"):
            spec.set_const("verdict", b"\1")
        with spec.load() as obj:
            assert obj.programs["rodata_verdict"].test_run(PKT).retval == XdpAction.DROP


def test_tail_call_key_from_rodata(objs):
    """The key read from .rodata selects the slot: 2 runs the target, 3 (empty) aborts."""
    for key, expected in ((2, XdpAction.DROP + 3), (3, XdpAction.ABORTED)):
        with ObjectSpec(objs["rodata"]) as spec:
            spec.set_const("next_key", key)
            spec.set_const("tag", b"\x03\0\0\0")
            with spec.load() as obj:
                hops = obj.map("hops", key=int, value=int)
                hops[2] = obj.programs["rodata_target"].fd
                assert obj.programs["rodata_hop"].test_run(PKT).retval == expected, key
