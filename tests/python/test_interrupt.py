"""Ctrl-C during every blocking call of pymic.

Each test starts a kernel that waits on a gate (a flag in host memory the
test opens), blocks in one of pymic's waits, and has a helper thread send
SIGINT to the main thread once the kernel has started and the main thread
is inside the blocking call.  The call must raise KeyboardInterrupt while
the kernel is still waiting (a watchdog opens the gate after a long time so
that a broken wait fails instead of hanging), every buffer the queued work
uses must stay alive, and after opening the gate the results are right and
pymic works as before.
"""

import gc
import signal
import subprocess
import sys
import tempfile
import textwrap
import threading
import time
import weakref

import numpy as np
import pytest

from helpers import assert_usable, block, main_thread_blocked

pytestmark = [
    pytest.mark.skipif(threading.current_thread() is not threading.main_thread(),
                       reason="signals reach the main thread only"),
    # The gate kernels read flags at host addresses.
    pytest.mark.host_memory,
]

WATCHDOG_SECONDS = 20.0


@pytest.fixture(autouse=True)
def sigint_raises():
    """Python's own SIGINT handler, whatever the test run inherited.

    A process started in the background by a non-interactive shell ignores
    SIGINT, and Python keeps an inherited SIG_IGN: the tests need the
    handler that raises KeyboardInterrupt.
    """
    previous = signal.signal(signal.SIGINT, signal.default_int_handler)
    yield
    signal.signal(signal.SIGINT, previous)


class Gate:
    """Two int64 flags in host memory shared with the gate kernels."""

    def __init__(self):
        self.started = np.zeros(1, dtype=np.int64)
        self.gate = np.zeros(1, dtype=np.int64)

    @property
    def args(self):
        """The kernel arguments: the flags' addresses."""
        return self.started.ctypes.data, self.gate.ctypes.data

    def open(self):
        self.gate[0] = 1


class Interrupter:
    """Sends one SIGINT to the main thread once `ready()` holds.

    The condition is checked together with the gate kernel's "started" flag
    and the main thread's position in `block`, so the signal arrives while
    the main thread waits.  If the main thread does not report the
    interrupt in time, the watchdog opens the gate so that a wait deaf to
    signals ends (and the test fails) instead of hanging.
    """

    def __init__(self, gate, ready=lambda: True):
        self.gate = gate
        self.ready = ready
        self.caught = threading.Event()
        self.sent = False
        self.watchdog_fired = False
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.thread.start()

    def _run(self):
        while not (self.gate.started[0] and self.ready() and main_thread_blocked()):
            if self.caught.is_set():
                return  # the call ended without waiting: send nothing
            time.sleep(0.001)
        self.sent = True
        signal.pthread_kill(threading.main_thread().ident, signal.SIGINT)
        if not self.caught.wait(WATCHDOG_SECONDS):
            self.watchdog_fired = True
            self.gate.open()

    def interrupted(self):
        """Call in the except clause: the wait ended by the signal."""
        self.caught.set()
        self.thread.join()
        assert self.sent
        assert not self.watchdog_fired, "the wait ignored SIGINT until the kernel ended"


def interrupt_blocking_call(gate, call, ready=lambda: True):
    """Run `call` under an Interrupter; return once KeyboardInterrupt came."""
    interrupter = Interrupter(gate, ready)
    try:
        with pytest.raises(KeyboardInterrupt):
            block(call)
    finally:
        # Whatever happened, no SIGINT may reach a later test.
        interrupter.caught.set()
    interrupter.interrupted()


def test_stream_sync_is_interruptible(stream, lib):
    gate = Gate()
    stream.invoke(lib.gate_wait, *gate.args)
    bound = stream.bind(np.arange(4.0))
    stream.invoke(lib.scale_double, bound, 4, 3.0)
    bound.update_host()
    interrupt_blocking_call(gate, stream.sync)
    assert not stream.query()  # the kernel still waits at the gate
    gate.open()
    stream.sync()
    np.testing.assert_array_equal(bound.array, np.arange(4.0) * 3.0)
    assert_usable(stream, lib)


def test_event_sync_is_interruptible(stream, lib):
    gate = Gate()
    stream.invoke(lib.gate_wait, *gate.args)
    event = stream.record_event()
    interrupt_blocking_call(gate, event.sync)
    assert not event.query()
    gate.open()
    event.sync()
    assert event.query()
    assert_usable(stream, lib)


def test_device_sync_is_interruptible(device, stream, lib):
    gate = Gate()
    stream.invoke(lib.gate_wait, *gate.args)
    interrupt_blocking_call(gate, device.sync)
    assert not stream.query()
    gate.open()
    device.sync()
    assert stream.query()
    assert_usable(stream, lib)


def test_translate_device_pointer_is_interruptible(stream, lib):
    gate = Gate()
    pointer = stream.allocate_device_memory(64)
    stream.invoke(lib.gate_wait, *gate.args)
    interrupt_blocking_call(gate, lambda: stream.translate_device_pointer(pointer))
    gate.open()
    assert stream.translate_device_pointer(pointer) != 0
    assert_usable(stream, lib)


def test_invoke_waiting_for_copy_back_is_interruptible(stream, lib):
    gate = Gate()
    data = np.arange(16.0)
    interrupt_blocking_call(gate, lambda: stream.invoke(lib.gate_then_double, data, 16,
                                                        *gate.args))
    # The kernel has not run yet: nothing was copied back.
    np.testing.assert_array_equal(data, np.arange(16.0))
    assert stream._pending_host_objects >= 1
    gate.open()
    stream.sync()
    np.testing.assert_array_equal(data, np.arange(16.0) * 2.0)
    assert stream._pending_host_objects == 0
    assert_usable(stream, lib)


def test_interrupted_invoke_keeps_its_arrays_alive(stream, lib):
    gate = Gate()
    data = np.arange(1 << 16, dtype=np.float64)
    alive = weakref.ref(data)
    call = lambda: stream.invoke(lib.gate_then_double, data, data.size, *gate.args)  # noqa: E731
    interrupt_blocking_call(gate, call)
    del call, data
    gc.collect()
    # The copy back into the array is still queued: the array must live.
    assert alive() is not None
    gate.open()
    stream.sync()
    gc.collect()
    assert alive() is None
    assert_usable(stream, lib)


def test_interrupted_invoke_of_a_non_contiguous_array(stream, lib):
    gate = Gate()
    base = np.arange(32.0)
    strided = base[::2]
    interrupt_blocking_call(gate, lambda: stream.invoke(lib.gate_then_double, strided, 16,
                                                        *gate.args))
    gate.open()
    stream.sync()
    # Interrupted before the write-back: the original keeps its values.
    np.testing.assert_array_equal(base, np.arange(32.0))
    assert stream._pending_host_objects == 0
    assert_usable(stream, lib)


def test_waiting_for_room_in_a_full_ring_is_interruptible(stream, lib):
    gate = Gate()
    enqueued = [0]
    stream.invoke(lib.gate_wait, *gate.args)

    def fill():
        # Far more than the ring holds: one of these waits for room.
        for count in range(1000):
            enqueued[0] = count
            stream.invoke(lib.empty_kernel)

    interrupt_blocking_call(gate, fill, ready=lambda: enqueued[0] >= 127)
    assert enqueued[0] < 999
    assert not stream.query()
    gate.open()
    stream.sync()
    assert_usable(stream, lib)


def test_interrupt_with_another_thread_waiting_too(stream, lib, device):
    # A second Python thread blocked in sync is not disturbed by the
    # main thread's KeyboardInterrupt; it returns once the work is done.
    gate = Gate()
    stream.invoke(lib.gate_wait, *gate.args)
    other = device.create_stream()
    other.invoke(lib.gate_wait, *gate.args)
    result = []
    waiter = threading.Thread(target=lambda: result.append(other.sync()))
    waiter.start()
    interrupt_blocking_call(gate, stream.sync)
    assert waiter.is_alive()
    gate.open()
    waiter.join()
    stream.sync()
    assert result == [None]


CHILD_PROLOGUE = textwrap.dedent("""
    import signal
    import sys
    import numpy as np
    import pymic
    # Raise KeyboardInterrupt even if started with SIGINT ignored.
    signal.signal(signal.SIGINT, signal.default_int_handler)
    lib = pymic.devices[0].load_library(sys.argv[1])
    stream = pymic.devices[0].get_default_stream()
    stream.invoke(lib.loop_forever)
    print("looping", flush=True)
""")


def _interrupt_child(kernel_dir, body):
    """Run a child whose kernel never ends; SIGINT it until it exits."""
    code = CHILD_PROLOGUE + textwrap.dedent(body)
    child = subprocess.Popen([sys.executable, "-c", code, str(kernel_dir / "libpymictest.so")],
                             stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                             cwd=tempfile.gettempdir())
    try:
        first_line = child.stdout.readline()
        if first_line != "looping\n":
            child.kill()
            pytest.fail(f"the child did not start: {first_line!r} {child.stderr.read()}")
        deadline = time.monotonic() + 60
        while child.poll() is None and time.monotonic() < deadline:
            child.send_signal(signal.SIGINT)
            try:
                child.wait(0.2)
            except subprocess.TimeoutExpired:
                pass
        assert child.poll() is not None, "the child ignores Ctrl-C"
        return child.returncode, child.stdout.read(), child.stderr.read()
    finally:
        if child.poll() is None:
            child.kill()
            child.wait()


def test_a_kernel_that_never_ends_does_not_make_the_process_immune(kernel_dir):
    returncode, _, stderr = _interrupt_child(kernel_dir, "stream.sync()\n")
    assert returncode != 0
    assert "KeyboardInterrupt" in stderr


def test_the_drain_at_exit_is_interruptible(kernel_dir):
    # The program ends normally; the drain at interpreter exit would wait
    # for the looping kernel forever.
    returncode, _, stderr = _interrupt_child(kernel_dir, "print('done', flush=True)\n")
    assert returncode != 0 or "KeyboardInterrupt" in stderr
