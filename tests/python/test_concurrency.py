"""Several Python threads at once, and streams that really run concurrently."""

import gc
import threading
import time

import numpy as np
import pytest

import pymic

THREADS = 4
ITERATIONS = 200


def run_threads(target, count=THREADS):
    """Start `count` threads running target(index), join them, re-raise failures."""
    failures = []
    barrier = threading.Barrier(count)

    def body(index):
        try:
            barrier.wait()
            target(index)
        except BaseException as error:  # reported in the main thread
            failures.append(error)

    threads = [threading.Thread(target=body, args=(i,)) for i in range(count)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=120)
        assert not thread.is_alive(), "a thread hung"
    if failures:
        raise failures[0]


def test_threads_share_one_stream_and_one_array(stream, lib):
    counter = stream.bind(np.zeros(16, dtype=np.int64))

    def work(_):
        for _ in range(ITERATIONS):
            stream.invoke(lib.increment_int64, counter, 16)

    run_threads(work)
    result = counter.update_host().array
    stream.sync()
    # Commands of one stream run one after another: no increment is lost.
    np.testing.assert_array_equal(result, np.full(16, THREADS * ITERATIONS))


def test_threads_share_one_stream_with_their_own_ndarrays(stream, lib):
    def work(index):
        for i in range(ITERATIONS // 4):
            data = np.full(64, float(index + i))
            stream.invoke(lib.scale_double, data, 64, 2.0)
            assert (data == 2.0 * (index + i)).all()

    run_threads(work)


def test_threads_on_the_default_stream(default_stream, lib):
    def work(index):
        offload = default_stream.bind(np.full(32, float(index)))
        for _ in range(10):
            default_stream.invoke(lib.scale_double, offload, 32, 2.0)
        result = offload.update_host().array
        default_stream.sync()
        assert (result == index * 2.0 ** 10).all()

    run_threads(work)


def test_threads_on_separate_streams(device, lib):
    def work(index):
        own_stream = device.create_stream()
        counter = own_stream.bind(np.zeros(8, dtype=np.int64))
        for _ in range(ITERATIONS):
            own_stream.invoke(lib.increment_int64, counter, 8)
        values = own_stream.bind(np.arange(100.0) + index)
        doubled = values + values
        result = counter.update_host().array
        twice = doubled.update_host().array
        own_stream.sync()
        assert (result == ITERATIONS).all()
        np.testing.assert_array_equal(twice, 2 * (np.arange(100.0) + index))

    run_threads(work)


def test_threads_with_low_level_transfers(device):
    def work(index):
        own_stream = device.create_stream()
        source = np.arange(256, dtype=np.float64) * (index + 1)
        target = np.zeros(256)
        pointer = own_stream.allocate_device_memory(source.nbytes)
        for _ in range(20):
            own_stream.transfer_host2device(source.ctypes.data, pointer, source.nbytes)
            own_stream.transfer_device2host(pointer, target.ctypes.data, source.nbytes)
        own_stream.sync()
        own_stream.deallocate_device_memory(pointer)
        own_stream.sync()
        np.testing.assert_array_equal(target, source)

    run_threads(work)


def test_threads_with_errors_and_good_calls(stream, lib):
    def work(index):
        for _ in range(50):
            if index % 2:
                with pytest.raises(pymic.OffloadError):
                    lib.no_such_kernel_here
                with pytest.raises(ValueError):
                    stream.allocate_device_memory(0)
            else:
                data = np.ones(4)
                stream.invoke(lib.scale_double, data, 4, 3.0)
                assert (data == 3.0).all()

    run_threads(work)


def test_two_streams_really_run_concurrently(device, lib):
    first = device.create_stream()
    second = device.create_stream()
    # Warm both streams so start-up costs stay out of the measurement.
    for warm in (first, second):
        warm.invoke(lib.empty_kernel)
        warm.sync()
    stamps = [first.bind(np.zeros(2)), second.bind(np.zeros(2))]
    first.sync()
    second.sync()
    begin = time.monotonic()
    first.invoke(lib.stamp_sleep, stamps[0], 200)
    second.invoke(lib.stamp_sleep, stamps[1], 200)
    first.sync()
    second.sync()
    elapsed = time.monotonic() - begin
    # Sleeping (not spinning) kernels: serial would take >= 400 ms.
    assert elapsed < 0.350, f"two 200 ms kernels on two streams took {elapsed:.3f} s"
    hosts = [offload.update_host().array for offload in stamps]
    first.sync()
    second.sync()
    (start_a, end_a), (start_b, end_b) = hosts
    assert max(start_a, start_b) < min(end_a, end_b), "the kernels did not overlap"


def test_sync_releases_the_gil(stream, lib):
    ticks = []
    stop = threading.Event()

    def ticker():
        while not stop.is_set():
            ticks.append(time.monotonic())
            time.sleep(0.002)

    thread = threading.Thread(target=ticker)
    thread.start()
    try:
        stream.invoke(lib.sleep_ms, 300)
        begin = time.monotonic()
        stream.sync()
        end = time.monotonic()
    finally:
        stop.set()
        thread.join()
    inside = [t for t in ticks if begin + 0.05 < t < end - 0.05]
    assert inside, "no other Python thread ran while sync() waited"


def test_invoke_with_ndarray_releases_the_gil(stream, lib):
    ticks = []
    stop = threading.Event()

    def ticker():
        while not stop.is_set():
            ticks.append(time.monotonic())
            time.sleep(0.002)

    thread = threading.Thread(target=ticker)
    thread.start()
    try:
        data = np.zeros(4)
        begin = time.monotonic()
        stream.invoke(lib.sleep_then_fill, data, 4, 1.0, 300)
        end = time.monotonic()
    finally:
        stop.set()
        thread.join()
    assert (data == 1.0).all()
    inside = [t for t in ticks if begin + 0.05 < t < end - 0.05]
    assert inside, "no other Python thread ran while invoke waited for the copy-back"


def test_threads_creating_and_dropping_streams_and_arrays(device, lib):
    def work(index):
        for round_number in range(15):
            own_stream = device.create_stream()
            values = own_stream.bind(np.full(64, float(index)))
            scaled = values * float(round_number)
            own_stream.invoke(lib.increment_int64, own_stream.bind(np.zeros(2, dtype=np.int64)), 2)
            result = scaled.update_host().array
            own_stream.sync()
            assert (result == index * round_number).all()
            del own_stream, values, scaled
            if round_number % 5 == 0:
                gc.collect()

    run_threads(work)


def test_one_thread_syncs_while_others_enqueue(stream, lib):
    counter = stream.bind(np.zeros(1, dtype=np.int64))
    stop = threading.Event()

    def syncer():
        while not stop.is_set():
            stream.sync()

    watcher = threading.Thread(target=syncer)
    watcher.start()
    try:
        def work(_):
            for _ in range(ITERATIONS):
                stream.invoke(lib.increment_int64, counter, 1)
        run_threads(work, count=3)
    finally:
        stop.set()
        watcher.join()
    result = counter.update_host().array
    stream.sync()
    assert result[0] == 3 * ITERATIONS


# The engine's command ring holds this many commands (pymic_stream_capacity);
# an enqueue beyond it has to wait for the oldest command to complete.
RING_CAPACITY = 128
GATE_SECONDS = 0.8


def flood_operations(stream, lib):
    """Per operation: a function enqueueing well over a ring's worth of it."""
    count = RING_CAPACITY + 20
    host = np.zeros(16)
    dptrs = [stream.allocate_device_memory(128) for _ in range(count)]
    target = stream.allocate_device_memory(128)
    offload = stream.bind(np.zeros(16))
    done = stream.record_event()
    stream.sync()

    def repeat(call, *args):
        return lambda: [call(*args) for _ in range(count)]

    def ndarray_invoke():
        for _ in range(RING_CAPACITY - 1):  # with the gate: a full ring
            stream.invoke(lib.empty_kernel)
        stream.invoke(lib.sleep_then_fill, host, 16, 1.0, 0)  # copy-in waits for room

    return {
        "invoke": repeat(stream.invoke, lib.sleep_ms, 5),
        "ndarray_invoke": ndarray_invoke,
        "transfer_host2device": repeat(stream.transfer_host2device, host, target, 128),
        "transfer_device2host": repeat(stream.transfer_device2host, target, host, 128),
        "transfer_device2device": repeat(stream.transfer_device2device, dptrs[0], target, 128),
        "update_device": repeat(offload.update_device),
        "record_event": repeat(stream.record_event),
        "wait_event": repeat(stream.wait_event, done),
        "deallocate_device_memory": lambda: [stream.deallocate_device_memory(d) for d in dptrs],
    }


@pytest.mark.parametrize("operation", [
    "invoke", "ndarray_invoke", "transfer_host2device", "transfer_device2host",
    "transfer_device2device", "update_device", "record_event", "wait_event",
    "deallocate_device_memory"])
def test_full_ring_does_not_hold_the_gil(device, stream, lib, operation):
    """A thread whose enqueue finds the ring full lets the others run."""
    flood = flood_operations(stream, lib)[operation]
    gate_stream = device.create_stream()
    gate_stream.invoke(lib.sleep_ms, int(GATE_SECONDS * 1000))
    # Nothing on `stream` completes before the gate opens, so the ring
    # fills up and the flooding thread has to wait for room.
    # Keep the event: destroying it would wait for its pending record.
    gate = gate_stream.record_event()
    stream.wait_event(gate)

    started = threading.Event()
    stop = threading.Event()
    progress = {"iterations": 0, "longest_gap": 0.0}

    def counter():
        last = time.monotonic()
        started.set()
        iterations, longest = 0, 0.0
        while not stop.is_set():
            now = time.monotonic()
            longest = max(longest, now - last)
            last = now
            iterations += 1
        progress.update(iterations=iterations, longest_gap=longest)

    thread = threading.Thread(target=counter)
    thread.start()
    started.wait()
    try:
        begin = time.monotonic()
        flood()
        flooded = time.monotonic() - begin
    finally:
        stop.set()
        thread.join()
    stream.sync()
    gate_stream.sync()
    # The flood waited for the gate (so the ring really was full) ...
    assert flooded > GATE_SECONDS * 0.6, f"the flood took only {flooded:.3f} s"
    # ... and meanwhile the other thread kept running.  Holding the GIL
    # while waiting would make its longest gap about the whole gate time.
    assert progress["iterations"] > 1000
    assert progress["longest_gap"] < 0.4 * flooded, (
        f"longest gap {progress['longest_gap']:.3f} s during a {flooded:.3f} s flood")
