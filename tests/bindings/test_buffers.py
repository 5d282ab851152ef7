"""Events from a ring buffer and a perf buffer, and callback errors that surface."""
import struct

import pytest

from emptcp import ObjectSpec, PerfBuffer, RingBuffer


def test_ring_and_perf_buffer_events(objs):
    with ObjectSpec(objs["basics"]).load() as o:
        ring_got, perf_got = [], []
        rb = RingBuffer(o.maps["events"], lambda data: ring_got.append(struct.unpack("II", data)))
        pb = PerfBuffer(o.maps["perf"], lambda cpu, data: perf_got.append(struct.unpack("II", data[:8])))
        for size in (60, 70, 80):
            o.programs["xdp_events"].test_run(bytes(size))
        assert rb.poll(100) == 3
        pb.poll(100)
        assert ring_got == [(0, 60), (1, 70), (2, 80)]
        assert sorted(perf_got) == ring_got
        assert pb.lost == 0
        rb.close()
        pb.close()


def test_callback_exception_is_reraised_from_poll(objs):
    with ObjectSpec(objs["basics"]).load() as o:
        def boom(data):
            raise RuntimeError("handler failed")
        with RingBuffer(o.maps["events"], boom) as rb:
            o.programs["xdp_events"].test_run(bytes(64))
            with pytest.raises(RuntimeError, match="handler failed"):
                rb.poll(100)
