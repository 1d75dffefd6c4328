"""Several Python threads at once, and streams that really run concurrently."""

import gc
import threading
import time

import numpy as np
import pytest

import pymic
from helpers import block, main_thread_blocked

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


# A gate kernel gives up after this long (then marks its gate -1): only a
# broken test waits for it.
GATE_TIMEOUT_MS = 20000


class Gate:
    """Flags in host memory shared with the gate kernels (gate.c)."""

    def __init__(self):
        self.started = np.zeros(1, dtype=np.int64)
        self.gate = np.zeros(1, dtype=np.int64)

    def args(self):
        return self.started.ctypes.data, self.gate.ctypes.data, GATE_TIMEOUT_MS

    def wait_started(self):
        while not self.started[0]:
            time.sleep(0.001)

    def open(self):
        """Open the gate unless the kernel already gave up."""
        if self.gate[0] == 0:
            self.gate[0] = 1

    @property
    def opened_in_time(self):
        return self.gate[0] == 1


def open_from_another_thread(gate, ready=lambda: True):
    """Start a Python thread that opens `gate` once the kernel has started,
    `ready()` holds and the main thread is inside a call made through
    helpers.block.  It can only run while the main thread has released the
    GIL; if the main thread waits holding it, the kernel times out instead
    and the gate reads -1."""
    def opener():
        gate.wait_started()
        # Stop trying once the kernel gave up (the gate reads -1).
        while gate.gate[0] == 0 and not (ready() and main_thread_blocked()):
            time.sleep(0.001)
        gate.open()

    thread = threading.Thread(target=opener, daemon=True)
    thread.start()
    return thread


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


@pytest.mark.host_memory
def test_two_streams_really_run_concurrently(device, lib):
    # A rendezvous: each kernel raises its own flag and waits for the
    # other's, so both complete only if they run at the same time.  Run one
    # after the other, the first would give up after GATE_TIMEOUT_MS.
    first = device.create_stream()
    second = device.create_stream()
    flag_a = np.zeros(1, dtype=np.int64)
    flag_b = np.zeros(1, dtype=np.int64)
    first.invoke(lib.gate_wait_bounded, flag_a.ctypes.data, flag_b.ctypes.data,
                 GATE_TIMEOUT_MS)
    second.invoke(lib.gate_wait_bounded, flag_b.ctypes.data, flag_a.ctypes.data,
                  GATE_TIMEOUT_MS)
    first.sync()
    second.sync()
    # A flag reads -1 if its waiter gave up before the other kernel ran.
    assert flag_a[0] == 1 and flag_b[0] == 1, "the kernels did not overlap"


@pytest.mark.host_memory
def test_sync_releases_the_gil(stream, lib):
    gate = Gate()
    stream.invoke(lib.gate_wait_bounded, *gate.args())
    opener = open_from_another_thread(gate)
    block(stream.sync)
    opener.join()
    assert gate.opened_in_time, "no other Python thread ran while sync() waited"


@pytest.mark.host_memory
def test_invoke_with_ndarray_releases_the_gil(stream, lib):
    gate = Gate()
    gate_stream = stream.get_device().create_stream()
    gate_stream.invoke(lib.gate_wait_bounded, *gate.args())
    # Keep the event until the end: today destroying a pending event waits.
    gate_event = gate_stream.record_event()
    stream.wait_event(gate_event)
    data = np.zeros(4)
    opener = open_from_another_thread(gate)
    block(lambda: stream.invoke(lib.sleep_then_fill, data, 4, 1.0, 0))
    opener.join()
    assert (data == 1.0).all()
    assert gate.opened_in_time, "no other Python thread ran while invoke waited"
    del gate_event


@pytest.mark.host_memory
def test_event_synced_from_several_threads(device, lib):
    # Several threads block on one pending event at once (the sleeping
    # path with PYMIC_SPIN_NS=0 too); all wake up when it completes.
    stream = device.create_stream()
    gate = Gate()
    stream.invoke(lib.gate_wait_bounded, *gate.args())
    event = stream.record_event()
    waiting = threading.Barrier(THREADS + 1)
    done = []

    def waiter(_):
        waiting.wait()
        event.sync()
        done.append(event.query())

    threads = [threading.Thread(target=waiter, args=(i,)) for i in range(THREADS)]
    for thread in threads:
        thread.start()
    waiting.wait()
    assert not event.query()
    gate.open()
    for thread in threads:
        thread.join(timeout=60)
    assert done == [True] * THREADS
    assert gate.opened_in_time


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


@pytest.mark.host_memory
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


def flood_operations(stream, lib, calls):
    """Per operation: a function enqueueing well over a ring's worth of it,
    counting the calls begun in calls[0]."""
    count = RING_CAPACITY + 20
    host = np.zeros(16)
    dptrs = [stream.allocate_device_memory(128) for _ in range(count)]
    target = stream.allocate_device_memory(128)
    offload = stream.bind(np.zeros(16))
    done = stream.record_event()
    stream.sync()

    def counted(call, *args):
        calls[0] += 1
        return call(*args)

    def repeat(call, *args):
        return lambda: [counted(call, *args) for _ in range(count)]

    def ndarray_invoke():
        for _ in range(RING_CAPACITY - 1):  # with the gate: a full ring
            counted(stream.invoke, lib.empty_kernel)
        counted(stream.invoke, lib.sleep_then_fill, host, 16, 1.0, 0)  # waits for room
        calls[0] += 1

    return {
        "invoke": repeat(stream.invoke, lib.sleep_ms, 5),
        "ndarray_invoke": ndarray_invoke,
        "transfer_host2device": repeat(stream.transfer_host2device, host, target, 128),
        "transfer_device2host": repeat(stream.transfer_device2host, target, host, 128),
        "transfer_device2device": repeat(stream.transfer_device2device, dptrs[0], target, 128),
        "update_device": repeat(offload.update_device),
        "record_event": repeat(stream.record_event),
        "wait_event": repeat(stream.wait_event, done),
        "deallocate_device_memory": lambda: [counted(stream.deallocate_device_memory, d)
                                             for d in dptrs],
    }


@pytest.mark.parametrize("operation", [
    "invoke", "ndarray_invoke", "transfer_host2device", "transfer_device2host",
    "transfer_device2device", "update_device", "record_event", "wait_event",
    "deallocate_device_memory"])
@pytest.mark.host_memory
def test_full_ring_does_not_hold_the_gil(device, stream, lib, operation):
    """A thread whose enqueue finds the ring full lets the others run."""
    calls = [0]
    flood = flood_operations(stream, lib, calls)[operation]
    gate = Gate()
    gate_stream = device.create_stream()
    gate_stream.invoke(lib.gate_wait_bounded, *gate.args())
    # Nothing on `stream` completes before the gate opens, so the ring
    # fills up and the flooding thread has to wait for room.
    # Keep the event until the end: today destroying a pending event waits.
    gate_event = gate_stream.record_event()
    stream.wait_event(gate_event)
    # The wait_event fills one slot; the flood's call number RING_CAPACITY
    # finds the ring full.  Only another Python thread opens the gate: if
    # the flooding thread waited holding the GIL, the gate would time out.
    opener = open_from_another_thread(gate, ready=lambda: calls[0] >= RING_CAPACITY)
    block(flood)
    opener.join()
    stream.sync()
    gate_stream.sync()
    assert calls[0] > RING_CAPACITY
    assert gate.opened_in_time, "the thread waiting for room held the GIL"
    del gate_event
