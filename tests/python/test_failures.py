"""No failure goes unseen: what depends on a failed command fails with it,
an error belongs to the command that failed (not to the next one after a
reset), and memory already freed is waited for before an allocation
fails.

Each scenario runs in a fresh interpreter with its own PYMIC_DEVICES (and
PYMIC_CHECK / PYMIC_MEMORY_LIMIT), so these tests pass whatever layout the
suite itself runs with; where a scenario needs a process device the test
says so.
"""

import os

import pytest

from helpers import run_python



def skip_without_process_device():
    """Skip the calling test on a build without ``pymic-device``."""
    import pymic
    if not os.path.exists(os.path.join(os.path.dirname(pymic.__file__), "pymic-device")):
        pytest.skip("this build has no process device")

# Stream 0 (device `FAILING`) fills x, runs a kernel that fails, copies x
# back and records `ready`; stream 1 (device `WAITING`) waits for `ready`,
# binds a host array, adds 1 and copies it back.  Its sync must raise the
# original failure, and the add must not have run.
DEPENDENT_PROGRAM = """
import numpy as np
import pymic

failing, waiting = pymic.devices[FAILING], pymic.devices[WAITING]
s0, s1 = failing.create_stream(), waiting.create_stream()
lib = failing.load_library(LIBRARY)
warm = s1.bind(np.zeros(1, dtype=np.int64)) + 1   # loads the array kernels on WAITING
s1.sync()
x = s0.bind(np.zeros(4))
s0.invoke(lib.fill_ones, x, np.int64(4))
FAIL(s0, lib, x)
x.update_host()
ready = s0.record_event()
s1.wait_event(ready)
h = np.zeros(4, dtype=np.int64)
oh = s1.bind(h)
oh += 1
oh.update_host()
try:
    s1.sync()
except pymic.OffloadError as error:
    message = str(error)
else:
    raise AssertionError(f"no exception; result {h}")
assert EXPECTED in message, message
assert (h == 0).all(), h           # the add and the copy back did not run
s1.sync()                           # reported once
try:
    s0.sync()
except pymic.OffloadError as error:
    assert EXPECTED in str(error), str(error)
else:
    raise AssertionError("the failing stream reported nothing")
print("ok")
"""


def run_dependent(kernel_dir, layout, failing, waiting, fail_code, expected, env=None):
    program = (f"LIBRARY = {str(kernel_dir / 'libpymictest.so')!r}\n"
               f"FAILING, WAITING = {failing}, {waiting}\n"
               f"EXPECTED = {expected!r}\n"
               f"def FAIL(s0, lib, x):\n    {fail_code}\n" + DEPENDENT_PROGRAM)
    result = run_python(program, env={"PYMIC_DEVICES": layout, **(env or {})})
    assert result.returncode == 0, result.stdout + result.stderr
    assert result.stdout.strip() == "ok", result.stdout + result.stderr


@pytest.mark.parametrize("layout, failing, waiting", [
    ("host", 0, 0),          # two streams of one device
    ("host*2", 0, 1),        # across devices
])
def test_wait_event_on_a_failed_event_fails_the_waiting_stream(kernel_dir, layout, failing,
                                                                waiting):
    # A kernel overruns its buffer (PYMIC_CHECK=bounds): runs on any build.
    run_dependent(kernel_dir, layout, failing, waiting,
                  "s0.invoke(lib.fill_ones, x, np.int64(5))",
                  "kernel 'fill_ones' (command", env={"PYMIC_CHECK": "bounds"})


@pytest.mark.parametrize("layout, failing, waiting", [
    ("proc;host", 0, 1),     # the reproduction: proc fails, host waits
    ("proc", 0, 0),
])
def test_wait_event_after_a_crash_fails_the_waiting_stream(kernel_dir, layout, failing,
                                                          waiting):
    skip_without_process_device()
    run_dependent(kernel_dir, layout, failing, waiting, "s0.invoke(lib.fault_segv)",
                  "kernel 'fault_segv' killed by SIGSEGV")


RESET_PROGRAM = """
import ctypes
import numpy as np
import pymic

proc = pymic.devices[0]
assert proc.kind == "proc", proc.kind
s = proc.get_default_stream()
lib = proc.load_library(LIBRARY)
flags = s.allocate_device_memory(16)
s.transfer_host2device(np.zeros(2, dtype=np.int64), flags, 16)
address = s.translate_device_pointer(flags)     # the same address on both sides
started = ctypes.c_int64.from_address(address)
# A kernel that never ends (its gate stays shut), started for sure:
s.invoke(lib.gate_wait, np.int64(address), np.int64(address + 8))
while started.value == 0:
    pass
proc.reset()                                    # stops it: the user asked for that
lib = proc.load_library(LIBRARY)
a = np.zeros(4, dtype=np.int64)
s.invoke(lib.increment_int64, a, np.int64(4))   # runs, so it must not raise
assert (a == 1).all(), a
s.sync()
print("ok")
"""


def test_first_invoke_after_reset_reports_no_old_error(kernel_dir):
    skip_without_process_device()
    program = f"LIBRARY = {str(kernel_dir / 'libpymictest.so')!r}\n" + RESET_PROGRAM
    result = run_python(program, env={"PYMIC_DEVICES": "proc"})
    assert result.returncode == 0, result.stdout + result.stderr
    assert result.stdout.strip() == "ok"


FREED_MEMORY_PROGRAM = """
import numpy as np
import pymic

stream = pymic.devices[0].get_default_stream()
for attempt in range(20):                       # failed 5 of 5 times on host
    oa = stream.bind(np.zeros(75000))           # 600000 of the 1 MiB limit
    stream.sync()
    del oa                                      # its free is queued on the stream
    ob = stream.bind(np.zeros(75000))           # must wait for that free
    del ob
    other = pymic.devices[0].create_stream()
    oc = other.bind(np.zeros(75000))            # a free queued on another stream
    del oc
    od = stream.bind(np.zeros(75000))
    del od, other
big = stream.bind(np.zeros(75000))
try:
    stream.allocate_device_memory(600000)      # cannot fit, whatever is freed
except pymic.OffloadError as error:
    assert "of the 1048576-byte limit in use" in str(error), str(error)
    assert "freed and pending release" in str(error), str(error)
else:
    raise AssertionError("the limit was not enforced")
print("ok")
"""


def test_allocation_waits_for_memory_already_freed():
    result = run_python(FREED_MEMORY_PROGRAM, env={"PYMIC_MEMORY_LIMIT": "1M"})
    assert result.returncode == 0, result.stdout + result.stderr
    assert result.stdout.strip() == "ok"


EXIT_PROGRAM = """
import numpy as np
import pymic

device = pymic.devices[0]
lib = device.load_library(LIBRARY)
kept = device.create_stream()

def overrun(stream):
    buffer = stream.bind(np.zeros(100))
    stream.invoke(lib.fill_ones, buffer, np.int64(101))   # one double too many

def dropped():
    stream = device.create_stream()   # destroyed on return, never synced
    overrun(stream)

if "kept" in CASES:
    overrun(kept)
if "dropped" in CASES:
    dropped()
if "crash" in CASES:
    kept.invoke(lib.fault_segv)
if "reported" in CASES:
    overrun(kept)
    try:
        kept.sync()
    except pymic.OffloadError:
        pass
print("end of program")
"""


def run_exit(kernel_dir, cases, env):
    program = (f"LIBRARY = {str(kernel_dir / 'libpymictest.so')!r}\n"
               f"CASES = {cases!r}\n" + EXIT_PROGRAM)
    return run_python(program, env=env)


@pytest.mark.parametrize("cases", [("kept",), ("dropped",), ("kept", "dropped")])
def test_failures_unreported_at_exit_are_printed_and_fail_the_exit_status(kernel_dir, cases):
    result = run_exit(kernel_dir, cases, {"PYMIC_CHECK": "bounds"})
    assert result.returncode == 1, result.stdout + result.stderr
    assert "end of program" in result.stdout
    reports = [line for line in result.stderr.splitlines()
               if line.startswith("pymic: failure not reported before exit:")]
    assert len(reports) == len(cases), result.stderr
    assert all("kernel 'fill_ones'" in line and "past the end of allocation" in line
               for line in reports), result.stderr


def test_crash_unreported_at_exit_fails_the_exit_status(kernel_dir):
    skip_without_process_device()
    result = run_exit(kernel_dir, ("crash",), {"PYMIC_DEVICES": "proc"})
    assert result.returncode == 1, result.stdout + result.stderr
    assert "pymic: failure not reported before exit:" in result.stderr, result.stderr
    assert "kernel 'fault_segv' killed by SIGSEGV" in result.stderr, result.stderr


def test_exit_is_quiet_when_every_failure_was_reported(kernel_dir):
    result = run_exit(kernel_dir, ("reported",), {"PYMIC_CHECK": "bounds"})
    assert result.returncode == 0, result.stdout + result.stderr
    assert "pymic:" not in result.stderr, result.stderr
    assert "end of program" in result.stdout
