"""Shared fixtures of the pymic test suite.

The test kernels in ``tests/python/kernels`` are compiled once per session,
the way a pymic user builds kernels: the system C compiler, the include
directory from :func:`pymic.get_include`, ``-shared -fPIC -fopenmp``.
"""

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

TESTS_DIR = Path(__file__).resolve().parent
REPOSITORY = TESTS_DIR.parents[1]

# `python -m pytest` run from the repository root puts the root on sys.path,
# and there the pymic *source* directory (which has no compiled _engine)
# would shadow the installed package.  The suite tests what users install.
sys.path[:] = [entry for entry in sys.path
               if Path(entry or os.getcwd()).resolve() != REPOSITORY]

import pymic  # noqa: E402  (after the sys.path fix above)
from helpers import assert_usable  # noqa: E402
KERNEL_SOURCES = TESTS_DIR / "kernels"

KERNEL_FLAGS = ["-std=c11", "-O2", "-Wall", "-Wextra", "-Werror",
                "-fPIC", "-shared", "-fopenmp"]

# Every library the suite builds: file name -> source directory.
TEST_LIBRARIES = {
    "libpymictest.so": KERNEL_SOURCES / "main",
    "libpymicsecond.so": KERNEL_SOURCES / "second",
    "libpymicundefined.so": KERNEL_SOURCES / "broken",
}


def compile_library(output, sources):
    """Compile C kernel sources into the shared object `output`.

    Parameters
    ----------
    output : pathlib.Path
        The shared object to write.
    sources : list of pathlib.Path
        The C files to compile into it.
    """
    compiler = os.environ.get("CC", "cc")
    if shutil.which(compiler) is None:
        pytest.exit(f"no C compiler ({compiler}) to build the test kernels", 2)
    command = [compiler, *KERNEL_FLAGS, f"-I{pymic.get_include()}",
               "-o", str(output), *map(str, sources)]
    result = subprocess.run(command, capture_output=True, text=True)
    if result.returncode != 0:
        pytest.exit(f"building {output.name} failed:\n{' '.join(command)}\n"
                    f"{result.stderr}", 2)


@pytest.fixture(scope="session")
def kernel_dir(tmp_path_factory):
    """Directory holding the compiled test libraries and ``libbogus.so``.

    Returns
    -------
    pathlib.Path
    """
    directory = tmp_path_factory.mktemp("kernels")
    for name, source_dir in TEST_LIBRARIES.items():
        compile_library(directory / name, sorted(source_dir.glob("*.c")))
    # A file with a library's name that is not a library at all.
    (directory / "libbogus.so").write_text("this is a text file, not an ELF shared object\n")
    return directory


@pytest.fixture(scope="session")
def device():
    """The first offload device, ``pymic.devices[0]``."""
    return pymic.devices[0]


@pytest.fixture
def lib(device, kernel_dir):
    """The main test kernel library loaded on device 0 by absolute path
    (loaded once: the device caches it, until a reset)."""
    return device.load_library(str(kernel_dir / "libpymictest.so"))


ON_PROC = any(d.kind == "proc" for d in pymic.devices.values())
# Devices whose kernels run in another process: a process device, or an MPI
# device (whose kernels run in an MPI rank, on this node or another).
REMOTE_KIND = next((d.kind for d in pymic.devices.values() if d.kind in ("proc", "mpi")), None)


def pytest_configure(config):
    config.addinivalue_line(
        "markers",
        "host_memory: a kernel reads or writes host memory through an address "
        "passed as an integer; skipped on a process device, whose kernels run "
        "in another process")
    config.addinivalue_line(
        "markers", "host_device(reason): runs on host devices only; skipped with `reason` "
        "on a process device")
    config.addinivalue_line(
        "markers", "device_memory_here: reads or writes device memory from this process "
        "(DLPack, a device address used as a host pointer); skipped where the device's memory "
        "is elsewhere (an MPI device)")
    config.addinivalue_line(
        "markers", "not_on_mpi(reason): skipped with `reason` on an MPI device")


def pytest_runtest_setup(item):
    if REMOTE_KIND == "mpi":
        if item.get_closest_marker("device_memory_here"):
            pytest.skip("device memory used from this process: an MPI device's memory is in "
                        "its own process (PYMIC_DEVICES=mpi)")
        marker = item.get_closest_marker("not_on_mpi")
        if marker:
            pytest.skip(f"{marker.args[0]} (PYMIC_DEVICES=mpi)")
    if REMOTE_KIND is None:
        return
    if item.get_closest_marker("host_memory"):
        pytest.skip(f"a kernel given a host address: a {REMOTE_KIND} device's kernels run in "
                    f"another process (PYMIC_DEVICES={REMOTE_KIND})")
    marker = item.get_closest_marker("host_device")
    if marker:
        pytest.skip(f"{marker.args[0]} (PYMIC_DEVICES={REMOTE_KIND})")


@pytest.fixture(autouse=True)
def _no_device_left_lost():
    """A test that leaves a process device lost fails, and the device is
    reset so the tests after it run on a working device."""
    yield
    lost = {d.device_id: pymic._engine.device_lost(d.device_id)
            for d in pymic.devices.values()}
    lost = {i: why for i, why in lost.items() if why}
    for i in lost:
        pymic.devices[i].reset()
    assert not lost, f"the test left devices lost: {lost}"


@pytest.fixture
def stream(device):
    """A fresh stream per test, so a failing test cannot disturb another."""
    new_stream = device.create_stream()
    yield new_stream
    new_stream.sync()


@pytest.fixture
def default_stream(device):
    """The device's default stream (what most pyMIC programs use)."""
    default = device.get_default_stream()
    yield default
    default.sync()


@pytest.fixture
def usable(stream, lib):
    """A callable ``usable()`` asserting that `stream` still works."""
    return lambda: assert_usable(stream, lib)
