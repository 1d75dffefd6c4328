"""Who keeps what alive and who waits for whom, across streams.

Each test holds a stream busy with a kernel that waits for a flag the test
sets (``hold_until_flag``), so "this must not have happened yet" is checked
while it provably cannot have, never by timing.  A call that must return
while the stream is held runs in a thread joined with a generous bound: a
correct implementation returns in microseconds, a broken one would wait for
the flag forever.
"""

import gc
import os
import threading
import weakref

import numpy as np
import pytest

import pymic
from helpers import run_python

N = 1 << 16  # 512 KiB of float64: big enough for the caching allocator
BOUND = 30.0  # seconds: only a hang takes this long


class Hold:
    """Holds a stream busy until released (a context manager)."""

    def __init__(self, stream, lib):
        self.flag = np.zeros(2, dtype=np.int64)
        self.stream = stream
        stream.invoke(lib.hold_until_flag, self.flag.ctypes.data)

    def release(self):
        self.flag[0] = 1

    @property
    def finished(self):
        return bool(self.flag[1])

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.release()
        self.stream.sync()


def returns_while_held(call):
    """Run `call` in a thread; True if it returned within the bound."""
    done = threading.Event()
    errors = []

    def run():
        try:
            call()
        except BaseException as error:  # reported to the test below
            errors.append(error)
        done.set()

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    finished = done.wait(BOUND)
    if errors:
        raise errors[0]
    return finished


@pytest.fixture
def streams(device):
    made = [device.create_stream() for _ in range(3)]
    yield made
    for stream in made:
        stream.sync()


@pytest.mark.host_memory
def test_operand_on_another_stream_is_not_freed_under_the_kernel(streams, lib):
    """``c = a + s2.bcast(1.0, n)``: the temporary operand is dropped at
    once, but the addition queued on a's (busy) stream still reads it."""
    s1, s2, _ = streams
    a = s1.bcast(2.0, N)
    with Hold(s1, lib) as hold:
        c = a + s2.bcast(1.0, N)
        gc.collect()
        x = s2.bcast(7.0, N)  # the freed block must not be handed out here
        s2.sync()
        assert not hold.finished
    c.update_host()
    s1.sync()
    assert np.all(c.array == 3.0)
    x.update_host()
    s2.sync()
    assert np.all(x.array == 7.0)


@pytest.mark.host_memory
def test_deallocate_waits_for_a_transfer_on_another_stream(streams, lib):
    s1, s2, _ = streams
    nbytes = N * 8
    fives, sevens, seen = np.full(N, 5.0), np.full(N, 7.0), np.zeros(N)
    pointer = s2.allocate_device_memory(nbytes)
    s2.transfer_host2device(fives.ctypes.data, pointer, nbytes)
    s2.sync()
    with Hold(s1, lib):
        s1.transfer_device2host(pointer, seen.ctypes.data, nbytes)
        s2.deallocate_device_memory(pointer)
        s2.sync()  # the free has run on its own stream
        reused = s2.allocate_device_memory(nbytes)
        s2.transfer_host2device(sevens.ctypes.data, reused, nbytes)
        s2.sync()
    assert np.all(seen == 5.0)


@pytest.mark.host_memory
def test_garbage_collected_pointer_waits_for_other_streams(streams, lib):
    """A device pointer dropped while a kernel on another stream still reads
    it: garbage collection frees it in its own stream's order, which must
    also wait for that kernel."""
    s1, s2, _ = streams
    nbytes = N * 8
    # Raw addresses keep nothing alive: the host arrays are named.
    fives, sevens = np.full(N, 5.0), np.full(N, 7.0)
    pointer = s2.allocate_device_memory(nbytes)
    s2.transfer_host2device(fives.ctypes.data, pointer, nbytes)
    s2.sync()
    dst = s1.zeros(N)
    with Hold(s1, lib):
        s1.invoke(lib.copy_double, dst, pointer, N)
        del pointer
        gc.collect()
        s2.sync()  # the free has run on its own stream
        other = s2.allocate_device_memory(nbytes)
        s2.transfer_host2device(sevens.ctypes.data, other, nbytes)
        s2.sync()
    dst.update_host()
    s1.sync()
    assert np.all(dst.array == 5.0)


@pytest.mark.host_memory
def test_array_moved_to_another_stream_then_used_and_dropped(streams, lib):
    """An array assigned to s2 but still read by a kernel queued on a busy
    s1: dropping it frees it in s2's order, after s1's kernel."""
    s1, s2, _ = streams
    a = s1.bcast(5.0, N)
    a.assign_stream(s2)
    dst = s1.zeros(N)
    with Hold(s1, lib):
        s1.invoke(lib.copy_double, dst, a, N)
        del a
        gc.collect()
        s2.sync()  # the free has run on the array's stream
        s2.bcast(7.0, N)
        s2.sync()
    dst.update_host()
    s1.sync()
    assert np.all(dst.array == 5.0)


@pytest.mark.host_memory
def test_wait_event_takes_a_snapshot(streams, lib):
    """Re-recording an event on an idle stream must not release a wait
    queued for its earlier record."""
    s1, s2, s3 = streams
    out = s3.zeros(4)
    with Hold(s1, lib) as hold:
        event = s1.record_event()
        s3.wait_event(event)
        s3.invoke(lib.scale_double, out, out.size, 0.0)  # any command behind the wait
        marker = s3.record_event()
        s2.record_event(event)  # idle stream: this record is done at once
        event.sync()  # the event as recorded now (on s2) has completed
        s2.sync()
        assert not marker.done
        assert not hold.finished
    marker.sync()


@pytest.mark.host_memory
def test_dropping_a_pending_event_does_not_block(streams, lib):
    s1, s2, _ = streams
    with Hold(s2, lib):
        assert returns_while_held(lambda: s1.wait_event(s2.record_event()))
        holder = [s2.record_event()]
        assert returns_while_held(holder.clear)


@pytest.mark.host_memory
def test_operator_with_operand_on_busy_stream_does_not_block(streams, lib):
    s1, s2, _ = streams
    a = s1.bcast(1.0, N)
    b = s2.bcast(2.0, N)
    with Hold(s2, lib):
        results = []
        assert returns_while_held(lambda: results.append(a + b))
    c = results[0]
    c.update_host()
    s1.sync()
    assert np.all(c.array == 3.0)


@pytest.mark.host_memory
def test_dropping_a_busy_stream_keeps_its_buffers(device, lib):
    """A stream destroyed with commands queued returns at once; the host
    array its queued copy-back writes stays alive until the copy ran."""
    stream = device.create_stream()
    host = np.zeros(N)
    alive = weakref.ref(host)
    bound = stream.bind(host, update_device=False)
    hold = Hold(stream, lib)
    hold.stream = None  # the stream must go with its last reference below
    stream.invoke(lib.scale_double, bound, N, 1.0)
    bound.update_host()
    del bound, host
    holder = [stream]
    del stream
    assert returns_while_held(holder.clear)
    gc.collect()
    assert alive() is not None  # kept for the queued copy-back
    hold.release()
    pymic._engine.drain_closing()
    gc.collect()
    assert alive() is None


@pytest.mark.host_memory
def test_device_sync_does_not_stop_stream_creation(device, kernel_dir):
    """Another thread's device sync (on a held stream) must neither hold the
    device lock nor the GIL while it waits."""
    script = f"""
import threading, numpy as np, pymic
device = pymic.devices[0]
lib = device.load_library({str(kernel_dir / 'libpymictest.so')!r})
stream = device.create_stream()
flag = np.zeros(2, dtype=np.int64)
stream.invoke(lib.hold_until_flag, flag.ctypes.data)
syncer = threading.Thread(target=device.sync)
syncer.start()
while not syncer.is_alive():
    pass
made = device.create_stream()
made.invoke(lib.empty_kernel)
made.sync()
print("created while held:", not flag[1] and syncer.is_alive())
flag[0] = 1
syncer.join()
"""
    result = run_python(script, timeout=BOUND)
    assert result.returncode == 0, result.stderr
    assert "created while held: True" in result.stdout


@pytest.mark.host_device("a fork()ed child cannot use its parent's device process")
def test_fork_child_gets_errors_and_a_working_default_stream(kernel_dir):
    script = f"""
import os, sys, numpy as np, pymic
device = pymic.devices[0]
lib = device.load_library({str(kernel_dir / 'libpymictest.so')!r})
stream = device.get_default_stream()
flag = np.zeros(2, dtype=np.int64)
stream.invoke(lib.hold_until_flag, flag.ctypes.data)
event = stream.record_event()
pid = os.fork()
if pid == 0:
    code = 0
    try:
        event.sync()
        code = 3
    except pymic.OffloadError as error:
        if "fork" not in str(error):
            code = 4
    del event
    fresh = device.get_default_stream()
    data = np.arange(4.0)
    fresh.invoke(lib.scale_double, data, data.size, 2.0)
    if not np.array_equal(data, np.arange(4.0) * 2):
        code = 5
    os._exit(code)
_, status = os.waitpid(pid, 0)
flag[0] = 1
event.sync()
print("child exit", os.waitstatus_to_exitcode(status))
"""
    result = run_python(script, timeout=BOUND)
    assert result.returncode == 0, result.stderr
    assert "child exit 0" in result.stdout


@pytest.mark.parametrize("name", ["printf", "stdout", "malloc"])
def test_names_the_library_does_not_define_are_not_kernels(lib, name):
    with pytest.raises(pymic.OffloadError, match=name):
        getattr(lib, name)


@pytest.mark.parametrize("variable,value", [
    ("PYMIC_MEMORY_LIMIT", "18446744073709551615"),
    ("PYMIC_SPIN_NS", " -1"),
    ("PYMIC_SPIN_NS", "-1"),
    ("PYMIC_DEBUG", "99999999999999999999"),
    ("PYMIC_DEBUG", "-3"),
])
def test_out_of_range_settings_are_refused(variable, value):
    result = run_python("import pymic", env={variable: value})
    assert result.returncode != 0
    assert variable in result.stderr


def test_default_memory_limit_respects_the_cgroup(device):
    """The default limit is at most the cgroup's, where there is one."""
    limit = None
    try:
        with open("/proc/self/cgroup") as lines:
            for line in lines:
                number, controllers, path = line.rstrip("\n").split(":", 2)
                if controllers == "":
                    candidate = f"/sys/fs/cgroup{path.rstrip('/')}/memory.max"
                    if os.path.exists(candidate):
                        text = open(candidate).read().strip()
                        if text != "max":
                            limit = int(text)
    except OSError:
        pass
    if limit is None:
        pytest.skip("this process has no cgroup v2 memory limit")
    result = run_python("import pymic; print(pymic._engine.device_info(0)['memory_total'])",
                        env={"PYMIC_MEMORY_LIMIT": None, "PYMIC_DEVICES": None})
    assert int(result.stdout) <= limit
