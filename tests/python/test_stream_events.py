"""Streams and events (API.md sections 5 and 6)."""

import ctypes
import gc
import os

import numpy as np
import pytest

import pymic


def test_sync_waits_for_everything_enqueued(stream, lib):
    target = stream.bind(np.zeros(3))
    stream.invoke(lib.sleep_then_fill, target, 3, 2.0, 100)
    target.update_host()
    stream.sync()
    np.testing.assert_array_equal(target.array, [2.0] * 3)


def test_sync_on_an_idle_stream_returns(stream):
    stream.sync()
    stream.sync()


def test_get_device(stream, device):
    assert stream.get_device() == device


def test_record_event_returns_an_event(stream):
    event = stream.record_event()
    assert isinstance(event, pymic.OffloadEvent)
    event.sync()
    assert event.done


def test_event_is_pending_until_its_point_is_reached(stream, lib):
    stream.invoke(lib.sleep_ms, 200)
    event = stream.record_event()
    assert not event.done
    event.sync()
    assert event.done


def test_event_sync_does_not_wait_for_later_commands(stream, lib):
    first = stream.bind(np.zeros(1))
    stream.invoke(lib.sleep_then_fill, first, 1, 1.0, 50)
    event = stream.record_event()
    stream.invoke(lib.sleep_ms, 300)
    after = stream.record_event()
    event.sync()
    assert event.done
    assert not after.done
    stream.sync()
    assert after.done


def test_elapsed_between_two_events(stream, lib):
    start = stream.record_event()
    stream.invoke(lib.sleep_ms, 100)
    end = stream.record_event()
    end.sync()
    seconds = start.elapsed(end)
    assert isinstance(seconds, float)
    # The events bracket a 100 ms sleep: the span cannot be shorter.
    assert seconds >= 0.099


def test_elapsed_of_a_pending_event_is_an_error(stream, lib, usable):
    start = stream.record_event()
    stream.invoke(lib.sleep_ms, 300)
    end = stream.record_event()
    with pytest.raises((pymic.OffloadError, ValueError)):
        start.elapsed(end)
    stream.sync()
    usable()


def test_wait_event_orders_two_streams(device, lib):
    producer = device.create_stream()
    consumer = device.create_stream()
    shared = producer.bind(np.zeros(4))
    producer.invoke(lib.sleep_then_fill, shared, 4, 9.0, 200)
    ready = producer.record_event()
    consumer.wait_event(ready)
    # Runs on the consumer stream only after the producer's kernel.
    result = np.zeros(4)
    consumer.invoke(lib.copy_double, result, shared, 4)
    np.testing.assert_array_equal(result, np.full(4, 9.0))


def test_wait_event_does_not_block_the_host(device, lib):
    producer = device.create_stream()
    consumer = device.create_stream()
    producer.invoke(lib.sleep_ms, 300)
    ready = producer.record_event()
    consumer.wait_event(ready)
    consumer.invoke(lib.empty_kernel)
    after = consumer.record_event()
    # wait_event returned at once; the consumer is held back by the event.
    assert not ready.done
    assert not after.done
    consumer.sync()
    assert ready.done and after.done


def test_event_from_another_stream_in_a_pipeline(device, lib):
    first = device.create_stream()
    second = device.create_stream()
    chunks = [first.bind(np.full(8, float(i))) for i in range(4)]
    for chunk in chunks:
        first.invoke(lib.scale_double, chunk, 8, 2.0)
        done = first.record_event()
        second.wait_event(done)
        chunk.assign_stream(second)
        second.invoke(lib.scale_double, chunk, 8, 3.0)
        chunk.update_host()
    second.sync()
    for i, chunk in enumerate(chunks):
        np.testing.assert_array_equal(chunk.array, np.full(8, 6.0 * i))


def waits_on_device():
    """Event waits the MPI backend handed to its devices (the plugin's count)."""
    library = ctypes.CDLL(os.path.join(os.path.dirname(pymic.__file__), "libpymic_mpi.so"))
    library.pymic_mpi_waits_on_device.restype = ctypes.c_uint64
    return int(library.pymic_mpi_waits_on_device())


def test_wait_between_streams_of_one_device_while_the_writer_is_held(device, lib):
    # The writer is held at a gate in device memory; the reader waits for
    # the writer's event and then reads what it wrote.  On an MPI device
    # the wait is resolved on the device: the reader's worker hands it over
    # while the writer is still held (on the host it would wait for the
    # writer's commands to come back first), and the order still holds.
    opener = device.create_stream()
    writer = device.create_stream()
    reader = device.create_stream()
    gate = opener.bind(np.zeros(1, dtype=np.int64))
    opener.sync()
    data = writer.bind(np.zeros(4))
    writer.sync()
    handed = waits_on_device() if device.kind == "mpi" else 0
    writer.invoke(lib.wait_for_device_gate, gate)
    writer.invoke(lib.sleep_then_fill, data, 4, 9.0, 0)
    written = writer.record_event()
    reader.wait_event(written)
    result = reader.bind(np.zeros(4))
    reader.invoke(lib.copy_double, result, data, 4)
    result.update_host()
    if device.kind == "mpi":
        # Bounded only so that a broken run fails instead of hanging.
        for _ in range(10_000_000):
            if waits_on_device() > handed:
                break
            os.sched_yield()
        assert waits_on_device() == handed + 1
    assert not written.done
    gate.fill(1)
    reader.sync()
    np.testing.assert_array_equal(result.array, np.full(4, 9.0))
    assert written.done
    writer.sync()


def test_wait_event_rejects_non_events(stream, usable):
    with pytest.raises(TypeError):
        stream.wait_event("event")
    usable()


def test_many_events(stream, lib):
    events = []
    for _ in range(200):
        stream.invoke(lib.empty_kernel)
        events.append(stream.record_event())
    events[-1].sync()
    assert all(event.done for event in events)
    assert events[0].elapsed(events[-1]) >= 0.0


def test_default_stream_works_after_other_streams_are_dropped(device, lib):
    for _ in range(4):
        temporary = device.create_stream()
        temporary.invoke(lib.sleep_ms, 5)
        del temporary
    gc.collect()
    default = device.get_default_stream()
    data = np.ones(2)
    default.invoke(lib.scale_double, data, 2, 3.0)
    np.testing.assert_array_equal(data, [3.0, 3.0])


# ------------------------------------------------ lifetime of pending work

ELEMENTS = 4096  # 32 KiB: small enough that malloc reuses a freed block


def test_array_dropped_while_its_copy_back_is_pending(stream, lib):
    offload = stream.bind(np.zeros(ELEMENTS))
    stream.invoke(lib.sleep_then_fill, offload, ELEMENTS, 3.0, 100)
    offload.update_host()
    host = offload.array
    del offload
    gc.collect()
    stream.sync()
    assert (host == 3.0).all()


def test_array_and_host_buffer_dropped_while_copies_are_pending(stream, lib, usable):
    # The kernel holds the stream, so the copy to the device (bind) and the
    # copy back (update_host) are still queued when both the OffloadArray
    # and its host array lose their last reference.
    stream.invoke(lib.sleep_ms, 100)
    offload = stream.bind(np.full(ELEMENTS, 5.0))
    offload.update_host()
    del offload
    gc.collect()
    # Fresh arrays likely reuse the dropped buffer's memory; a copy-back into
    # freed memory would overwrite them.
    fresh = [np.full(ELEMENTS, 7.0) for _ in range(8)]
    stream.sync()
    for array in fresh:
        assert (array == 7.0).all()
    usable()


def test_ndarray_argument_dropped_after_invoke(stream, lib, usable):
    # invoke with an ndarray returns after the copy-back, so the caller may
    # drop it at once; nothing may touch it afterwards.
    for _ in range(10):
        stream.invoke(lib.scale_double, np.ones(ELEMENTS), ELEMENTS, 2.0)
    fresh = [np.full(ELEMENTS, 7.0) for _ in range(8)]
    stream.sync()
    for array in fresh:
        assert (array == 7.0).all()
    usable()


def test_offload_array_dropped_while_a_kernel_uses_it(stream, lib, usable):
    keep = stream.bind(np.zeros(ELEMENTS))
    scratch = stream.bind(np.zeros(ELEMENTS))
    stream.invoke(lib.sleep_then_fill, scratch, ELEMENTS, 4.0, 100)
    stream.invoke(lib.copy_double, keep, scratch, ELEMENTS)
    del scratch
    gc.collect()
    result = keep.update_host().array
    stream.sync()
    assert (result == 4.0).all()
    usable()


def test_dropping_a_busy_stream_finishes_its_work(device, lib, usable):
    temporary = device.create_stream()
    host = np.zeros(4)
    offload = temporary.bind(host)
    temporary.invoke(lib.sleep_then_fill, offload, 4, 5.0, 100)
    offload.update_host()
    event = temporary.record_event()
    del temporary, offload
    gc.collect()
    # The event outlives its stream; waiting on it still works.
    event.sync()
    assert event.done
    np.testing.assert_array_equal(host, np.full(4, 5.0))
    usable()


def test_same_array_twice_in_one_invoke(stream, lib):
    data = np.arange(5.0)
    stream.invoke(lib.copy_double, data, data, 5)
    np.testing.assert_array_equal(data, np.arange(5.0))


def test_binding_one_array_twice_gives_independent_device_copies(stream, lib):
    host = np.ones(3)
    first = stream.bind(host)
    second = stream.bind(host)
    stream.invoke(lib.scale_double, first, 3, 4.0)
    result = (second + second).update_host().array
    stream.sync()
    np.testing.assert_array_equal(result, np.full(3, 2.0))


def test_elapsed_is_positive_from_earlier_to_later(stream, lib):
    start = stream.record_event()
    stream.invoke(lib.sleep_ms, 20)
    end = stream.record_event()
    end.sync()
    # Read as "time elapsed from this event to the other one".
    assert start.elapsed(end) > 0.0
