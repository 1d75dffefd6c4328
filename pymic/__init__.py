"""pymic: offload compute kernels from Python to devices.

pymic re-implements the programming model and the Python API of Intel's
pyMIC for today's CPUs: kernels written in C (or any language with a C
entry point) run on *offload devices* -- partitions of this machine's cores
with their own memory and worker threads -- fed by asynchronous *streams*.

Quick start::

    import numpy, pymic
    device = pymic.devices[0]
    library = device.load_library("libdouble_it.so")
    stream = device.get_default_stream()
    a = numpy.arange(8.0)
    offl_a = stream.bind(a)
    stream.invoke(library.doubleit_kernel, offl_a, a.size)
    offl_a.update_host()
    stream.sync()

Environment: PYMIC_DEVICES (device layout), PYMIC_LIBRARY_PATH (library
search path), PYMIC_DEBUG (debug messages on stderr, prefixed ``PYMIC:``),
PYMIC_CC and PYMIC_CACHE_DIR (``device.load_source``), PYMIC_TRACE (write a
Chrome/Perfetto trace of the whole run).  ``python -m pymic`` has ``info``,
``selftest``, ``trace-summary FILE`` and ``cache``.
"""

import atexit as _atexit
import os as _os
import sys as _sys
import threading as _threading

import numpy as _numpy

try:
    from . import _engine
except ImportError as _error:  # pragma: no cover - depends on how pymic is run
    # The usual cause: running Python inside the source tree, whose pymic/
    # directory shadows the installed package and has no compiled parts.
    raise ImportError(
        "pymic's compiled extension could not be imported from %s (%s). If this "
        "is pymic's source tree, build and install pymic (`make install` or "
        "`pip install .`) and run Python from another directory."
        % (_os.path.dirname(__file__), _error)
    ) from _error
from ._engine import OffloadError, OffloadValueError

_engine.init()
_engine.set_numpy_types(_numpy.ndarray, _numpy.generic)

from .device import OffloadDevice, devices, local_device, number_of_devices  # noqa: E402
from .stream import OffloadStream  # noqa: E402
from .library import OffloadLibrary  # noqa: E402
from .array import OffloadArray, from_dlpack  # noqa: E402
from ._compile import CacheSecurityError, CompileError, CompilerWarning, compile  # noqa: E402
from .tracing import Trace, trace, trace_range  # noqa: E402

OffloadEvent = _engine.Event
DevicePointer = _engine.DevicePointer
KernelHandle = _engine.KernelHandle
#: Most arguments one kernel invocation may take.
MAX_KERNEL_ARGS = _engine.MAX_KERNEL_ARGS

__version__ = "%d.%d.%d" % _engine.version()

__all__ = [
    "CacheSecurityError",
    "CompileError",
    "CompilerWarning",
    "DevicePointer",
    "KernelHandle",
    "MAX_KERNEL_ARGS",
    "OffloadArray",
    "OffloadDevice",
    "OffloadError",
    "OffloadEvent",
    "OffloadLibrary",
    "OffloadStream",
    "OffloadValueError",
    "Trace",
    "compile",
    "devices",
    "from_dlpack",
    "get_include",
    "local_device",
    "number_of_devices",
    "trace",
    "trace_range",
]


def get_include() -> str:
    """Return the directory holding pymic.h and pymic_kernel.h.

    Use it to compile kernel libraries and C extensions against pymic, as
    with ``numpy.get_include()``::

        cc -shared -fPIC -I$(python -c "import pymic; print(pymic.get_include())") ...

    Returns
    -------
    str
        Absolute path of the headers' directory.
    """
    return _os.path.join(_os.path.dirname(_os.path.abspath(__file__)), "include")


def _report_failures(failures: list[str]) -> None:
    """Drain every device, collecting the failures nobody was told of.

    Each ``device.sync()`` raises the oldest unreported failure of one
    stream of the device (or of a stream destroyed before reporting it);
    syncing until a sync succeeds collects them all.

    Parameters
    ----------
    failures : list of str
        Messages are appended to it.
    """
    for device_id in devices:
        device = devices[device_id]
        # Each failing sync reports (and forgets) one failure; an error
        # that comes back unchanged is not one that syncing consumes.
        repeated = 0
        while repeated < 2:
            try:
                device.sync()
                stream = device._default_stream
                if stream is not None:
                    stream.sync()   # also lets go of its kept host buffers
                break
            except OffloadError as error:
                repeated = repeated + 1 if failures and failures[-1] == str(error) else 0
                if repeated == 0:
                    failures.append(str(error))


def _sync_all_streams() -> None:
    """Drain every device at interpreter exit and report what failed.

    No queued command may outlive the host objects it uses, and module
    teardown destroys those objects in no particular order.  A failure
    nobody was told of (a stream never synced, a destroyed stream) is
    printed on stderr and makes the exit status 1, as an uncaught
    exception would.
    """
    failures: list[str] = []
    _report_failures(failures)
    _engine.drain_closing()
    _report_failures(failures)   # streams destroyed while draining
    if failures:
        for message in failures:
            print("pymic: failure not reported before exit: " + message, file=_sys.stderr)
        _sys.stderr.flush()
        _engine.fail_exit_status()


def _after_fork_in_child() -> None:
    """Give a forked child its own default streams.

    The parent's streams have no worker thread in the child: using one
    raises OffloadError.  ``get_default_stream()`` creates a new one, and
    buffers kept for the parent's destroyed streams are let go.
    """
    for device_id in devices:
        device = devices[device_id]
        device._lock = _threading.RLock()  # another thread may have held it
        device._default_stream = None
    _engine.after_fork_child()


# PYMIC_TRACE: record the whole run.  Its file is written at exit, after
# the handler below has drained the devices (atexit runs handlers in
# reverse order of registration).
from .tracing import start_from_environment as _start_trace  # noqa: E402

_start_trace()
_atexit.register(_sync_all_streams)
_os.register_at_fork(after_in_child=_after_fork_in_child)
