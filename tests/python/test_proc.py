"""The process device: kernel faults become OffloadError, reset() brings
the device back, layouts mixing host and proc devices.

Each scenario runs in a fresh interpreter with its own PYMIC_DEVICES, so
these tests pass whatever layout the suite itself runs with.
"""

import os

import pytest

from helpers import run_python

FAULT_PROGRAM = """
import numpy as np
import pymic

def value(array):
    array.update_host()
    array.stream.sync()
    return array.array


host, proc = pymic.devices[0], pymic.devices[1]
assert (host.kind, proc.kind) == ("host", "proc"), (host.kind, proc.kind)
stream = proc.get_default_stream()
for attempt in range(3):                      # every time, not only once
    lib = proc.load_library(LIBRARY)
    kept = stream.bind(np.arange(4.0))
    stream.invoke(getattr(lib, KERNEL))
    try:
        stream.sync()
    except pymic.OffloadError as error:
        message = str(error)
    else:
        raise AssertionError("the fault raised nothing")
    assert EXPECTED in message, message
    assert pymic._engine.device_lost(1) is not None
    # Every later command on the device fails too ...
    try:
        value(kept + kept)
    except pymic.OffloadError as error:
        assert "device 1 lost" in str(error), str(error)
    else:
        raise AssertionError("a command after the fault succeeded")
    # ... the host device does not care ...
    on_host = host.get_default_stream().bind(np.ones(3))
    assert (value(on_host + on_host) == 2).all()
    # ... and reset() brings the device back (libraries loaded again).
    proc.reset()
    assert pymic._engine.device_lost(1) is None
    fresh = stream.bind(np.arange(4.0))
    assert (value(fresh + fresh) == 2 * np.arange(4.0)).all()
    del kept, fresh
print("python goes on")
"""


@pytest.mark.parametrize("kernel, cause", [
    ("fault_segv", "killed by SIGSEGV"),
    ("fault_abort", "killed by SIGABRT"),
    ("fault_exit", "exited with status 7"),
])
def test_fault_is_an_offload_error_every_time_and_reset_recovers(kernel_dir, kernel, cause):
    program = (f"LIBRARY = {str(kernel_dir / 'libpymictest.so')!r}\n"
               f"KERNEL = {kernel!r}\n"
               f"EXPECTED = \"device 1 lost: kernel '{kernel}' {cause}\"\n" + FAULT_PROGRAM)
    result = run_python(program, env={"PYMIC_DEVICES": "host;proc"})
    assert result.returncode == 0, result.stdout + result.stderr
    assert "python goes on" in result.stdout


def test_endless_kernel_is_killed_by_the_watchdog(kernel_dir):
    program = (f"LIBRARY = {str(kernel_dir / 'libpymictest.so')!r}\n"
               "KERNEL = 'fault_endless'\n"
               "EXPECTED = \"device 1 lost: kernel 'fault_endless' ran longer than "
               "PYMIC_KERNEL_TIMEOUT\"\n" + FAULT_PROGRAM)
    result = run_python(program, env={"PYMIC_DEVICES": "host;proc",
                                      "PYMIC_KERNEL_TIMEOUT": "0.5"})
    assert result.returncode == 0, result.stdout + result.stderr


def test_bad_kernel_timeout_is_a_configuration_error():
    result = run_python("import pymic", env={"PYMIC_DEVICES": "proc",
                                             "PYMIC_KERNEL_TIMEOUT": "soon"})
    assert result.returncode != 0
    assert "PYMIC_KERNEL_TIMEOUT" in result.stderr


MIXED_PROGRAM = """
import numpy as np
import pymic

kinds = [d.kind for d in pymic.devices.values()]
assert kinds == EXPECTED_KINDS, kinds
for device in pymic.devices.values():
    assert device.name.startswith(device.kind + ":"), device.name
    stream = device.create_stream()
    a = stream.bind(np.arange(1000.0))
    b = a * 3.0 + a
    b.update_host()
    stream.sync()
    b = b.array
    assert (b == 4 * np.arange(1000.0)).all()
    lib = device.load_library(LIBRARY)
    stream.sync()
print("ok")
"""


def layouts():
    cpus = sorted(os.sched_getaffinity(0))
    first, last = cpus[0], cpus[-1]
    return [
        ("proc", ["proc"]),
        ("proc*2", ["proc", "proc"]),
        (f"proc:{first}-{last}", ["proc"]),
        (f"host:{first};proc:{last}", ["host", "proc"]),
        ("proc;host;proc", ["proc", "host", "proc"]),
    ]


@pytest.mark.parametrize("layout, kinds", layouts())
def test_mixed_layouts_run_on_every_device(kernel_dir, layout, kinds):
    program = (f"LIBRARY = {str(kernel_dir / 'libpymictest.so')!r}\n"
               f"EXPECTED_KINDS = {kinds!r}\n" + MIXED_PROGRAM)
    result = run_python(program, env={"PYMIC_DEVICES": layout})
    assert result.returncode == 0, result.stdout + result.stderr


def test_translated_pointer_is_the_address_the_kernel_sees(kernel_dir):
    program = f"""
import numpy as np
import pymic
device = pymic.devices[0]
stream = device.get_default_stream()
lib = device.load_library({str(kernel_dir / 'libpymictest.so')!r})
out = stream.bind(np.zeros(8))
stream.invoke(lib.fill_ones, out, np.int64(8))
out.update_host()
stream.sync()
assert (out.array == 1).all()
print(device.kind)
"""
    result = run_python(program, env={"PYMIC_DEVICES": "proc"})
    assert result.returncode == 0, result.stdout + result.stderr
    assert result.stdout.strip() == "proc"


def test_unknown_device_kind_names_both_kinds():
    result = run_python("import pymic", env={"PYMIC_DEVICES": "gpu"})
    assert result.returncode != 0
    assert '"host" and "proc"' in result.stderr


BOUNDS_PROGRAM = """
import numpy as np
import pymic

for device in pymic.devices.values():
    stream = device.create_stream()
    lib = device.load_library(LIBRARY)
    buffer = stream.bind(np.zeros(100))
    stream.invoke(lib.fill_ones, buffer, np.int64(101))   # one double too many
    try:
        stream.sync()
    except pymic.OffloadError as error:
        message = str(error)
    else:
        raise AssertionError(f"{device.kind}: the overrun went unnoticed")
    assert "kernel 'fill_ones'" in message and "past the end of allocation" in message, message
    assert "(800 bytes)" in message, message
    stream.invoke(lib.fill_ones, buffer, np.int64(100))   # within bounds: fine
    stream.sync()
    # An ndarray argument's device copy (staged by pymic, freed as soon as
    # the kernel is queued) is an allocation like any other.
    try:
        stream.invoke(lib.fill_ones, np.zeros(100), np.int64(101))
        stream.sync()
    except pymic.OffloadError as error:
        message = str(error)
    else:
        raise AssertionError(f"{device.kind}: the overrun of an ndarray went unnoticed")
    assert "kernel 'fill_ones'" in message and "past the end of allocation" in message, message
    assert "(800 bytes)" in message, message
    if device.kind == "proc":
        stream.invoke(lib.fill_ones, buffer, np.int64(100 + 1024))   # into the guard page
        try:
            stream.sync()
        except pymic.OffloadError as error:
            message = str(error)
        else:
            raise AssertionError("the guard page was not hit")
        assert "killed by SIGSEGV writing past the end of allocation" in message, message
        device.reset()
print("ok")
"""


def test_bounds_check_names_kernel_and_allocation_on_both_kinds(kernel_dir):
    program = (f"LIBRARY = {str(kernel_dir / 'libpymictest.so')!r}\n" + BOUNDS_PROGRAM)
    result = run_python(program, env={"PYMIC_DEVICES": "host;proc", "PYMIC_CHECK": "bounds"})
    assert result.returncode == 0, result.stdout + result.stderr
    assert result.stdout.strip() == "ok"


def test_unknown_check_is_a_configuration_error():
    result = run_python("import pymic", env={"PYMIC_CHECK": "everything"})
    assert result.returncode != 0
    assert "PYMIC_CHECK" in result.stderr


TERMINAL_SIGNALS_PROGRAM = """
import os
import signal

# A process group of our own, before the device process starts: the
# signals below then reach this program and its device process only.
os.setpgid(0, 0)
terminal = {signal.SIGINT, signal.SIGQUIT, signal.SIGTSTP}
signal.pthread_sigmask(signal.SIG_BLOCK, terminal)   # this program takes them by sigwait

import numpy as np
import pymic

device = pymic.devices[0]
assert device.kind == "proc", device.kind
stream = device.get_default_stream()
a = stream.bind(np.arange(4.0))
stream.sync()
for number in sorted(terminal):        # Ctrl-Z, Ctrl-\\, Ctrl-C at a terminal
    os.killpg(os.getpgrp(), number)
for _ in terminal:                     # Python waits for something else meanwhile
    assert signal.sigtimedwait(terminal, 60) is not None
b = a + a
b.update_host()
stream.sync()
assert (b.array == 2 * np.arange(4.0)).all()
assert pymic._engine.device_lost(0) is None
print("ok")
"""


def test_terminal_signals_to_the_process_group_leave_the_device_alone():
    result = run_python(TERMINAL_SIGNALS_PROGRAM, env={"PYMIC_DEVICES": "proc"})
    assert result.returncode == 0, result.stdout + result.stderr
    assert result.stdout.strip() == "ok"


MEMORY_RETURNED_PROGRAM = """
import os

import numpy as np
import pymic


def arena_bytes():
    # The blocks of the device memory file this process holds open.
    for fd in os.listdir("/proc/self/fd"):
        path = f"/proc/self/fd/{fd}"
        try:
            if "memfd:pymic-device-memory" in os.readlink(path):
                return os.stat(path).st_blocks * 512
        except OSError:
            pass
    raise AssertionError("no device memory file")


BIG, SMALL, SLACK = 128 << 20, 8 << 20, 64 << 10
device = pymic.devices[0]
device.reset()            # a reset writes every mailbox: their pages count from here
stream = device.get_default_stream()
big = stream.bind(np.ones(BIG // 8))
stream.sync()
held = arena_bytes()
assert held >= BIG, held
del big
stream.sync()
assert device.memory_used == 0
after = arena_bytes()
assert after <= held - BIG + SLACK, (held, after)     # a large block: at once
small = stream.bind(np.ones(SMALL // 8))
del small
stream.sync()
warm = arena_bytes()
assert warm >= after + SMALL, (after, warm)           # a small one: kept for reuse
device.reset()
assert arena_bytes() <= warm - SMALL + SLACK, (warm, arena_bytes())   # until a reset
print("ok")
"""


def test_freed_device_memory_goes_back_to_the_system():
    result = run_python(MEMORY_RETURNED_PROGRAM, env={"PYMIC_DEVICES": "proc"})
    assert result.returncode == 0, result.stdout + result.stderr
    assert result.stdout.strip() == "ok"


FORK_PROGRAM = """
import os
import select
import sys

import numpy as np
import pymic

device = pymic.devices[0]
stream = device.get_default_stream()
lib = device.load_library(LIBRARY)
stream.invoke(lib.fork_and_return)
stream.sync()
counter = stream.bind(np.zeros(1, dtype=np.int64))
for _ in range(10):
    stream.invoke(lib.increment_int64, counter, 1)
    stream.sync()
counter.update_host()
stream.sync()
assert counter.array[0] == 10, counter.array


def leave_a_child():
    pid = np.zeros(1, dtype=np.int64)
    stream.invoke(lib.fork_sleeper, pid)
    assert pid[0] > 0, pid
    return int(pid[0])


def ends(watch):
    # The pidfd becomes readable when the process ends (bounded: only a
    # failure waits that long).
    return select.select([watch], [], [], 60)[0] == [watch]


watch = os.pidfd_open(leave_a_child())
device.reset()
assert ends(watch), "a kernel's child outlived the reset"
lib = device.load_library(LIBRARY)
print(leave_a_child(), flush=True)   # the test watches this one: it lives until
sys.stdin.readline()                 # this program ends
"""


def test_fork_in_a_kernel_runs_later_kernels_once_and_leaves_no_orphans(kernel_dir):
    import select
    import subprocess
    import sys
    import tempfile
    program = f"LIBRARY = {str(kernel_dir / 'libpymictest.so')!r}\n" + FORK_PROGRAM
    env = dict(os.environ, PYMIC_DEVICES="proc")
    # stderr to a file: a process that outlives the program (the bug) may
    # hold it open; stdout is read with a bound for the same reason.
    with tempfile.TemporaryFile("w+") as errors, \
            subprocess.Popen([sys.executable, "-c", program], env=env, text=True,
                             stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=errors,
                             cwd=tempfile.gettempdir()) as child:
        def stderr():
            errors.seek(0)
            return errors.read()

        try:
            ready = select.select([child.stdout], [], [], 120)[0]
            line = child.stdout.readline().strip() if ready else ""
            assert line.isdigit(), line + stderr()
            orphan = os.pidfd_open(int(line))   # alive: the program waits for us
            try:
                child.stdin.write("\n")
                child.stdin.flush()
                assert child.wait(timeout=60) == 0, stderr()
                assert select.select([orphan], [], [], 60)[0] == [orphan], \
                    "a kernel's child outlived Python"
            finally:
                os.close(orphan)
        finally:
            if child.poll() is None:
                child.kill()
