"""pymic and MPI: the communicator of the host ranks, the MPI round trip.

With MPI devices (``PYMIC_DEVICES=mpi`` or ``mpi*N``) launched MPMD-style::

    mpirun -np 2 python app.py : -np 2 pymic-device

``MPI_COMM_WORLD`` holds the device ranks too, so the application's own MPI
code must use :func:`host_comm` instead: the host ranks only, in their
order in ``MPI_COMM_WORLD``.  With devices spawned by the program (no
device ranks on the launch line) it is ``MPI_COMM_WORLD`` itself.

:func:`round_trip` measures the MPI underneath an MPI device: a one-word
ping-pong between this process and the device's.

This module imports mpi4py (for :func:`host_comm`); ``import pymic`` alone
never needs MPI.
"""

import ctypes
import os
from typing import Any

from ._engine import OffloadError
from .device import devices

__all__ = ["host_comm", "round_trip"]


def _plugin(what: str = "pymic.mpi.host_comm") -> ctypes.CDLL:
    # The registry opened libpymic_mpi.so from beside libpymic; opening it
    # again by the same name gives that same instance.
    path = os.path.join(os.path.dirname(os.path.abspath(__file__)), "libpymic_mpi.so")
    if not os.path.exists(path):
        raise OffloadError(f"{what}: pymic was built without MPI "
                           f"({path} does not exist)")
    return ctypes.CDLL(path, mode=getattr(os, "RTLD_NOLOAD", 0) | os.RTLD_LOCAL)


def host_comm() -> Any:
    """Return the communicator of the host ranks as an mpi4py communicator.

    Sets up the devices first if needed (``pymic.devices``): under an
    MPMD launch that is where the host ranks and the device ranks find each
    other, collectively over ``MPI_COMM_WORLD``.

    Returns
    -------
    mpi4py.MPI.Intracomm
        The host ranks only (an MPMD launch), or ``MPI_COMM_WORLD`` (devices
        spawned by the program).  Owned by pymic: do not free it.

    Raises
    ------
    OffloadError
        pymic was built without MPI, or no MPI device was started in this
        process (``PYMIC_DEVICES`` has no ``mpi`` entry), or MPI could not be
        used (the reason says why).
    ImportError
        mpi4py is not installed.
    """
    from mpi4py import MPI

    len(devices)  # the engine is initialised at import; this keeps it so
    try:
        plugin = _plugin()
    except OSError as error:
        raise OffloadError(f"pymic.mpi.host_comm: libpymic_mpi.so is not loaded: {error}; "
                           "PYMIC_DEVICES has no \"mpi\" entry") from error
    plugin.pymic_mpi_host_comm.restype = ctypes.c_int
    plugin.pymic_mpi_host_comm.argtypes = [ctypes.c_char_p, ctypes.c_size_t]
    why = ctypes.create_string_buffer(512)
    handle = plugin.pymic_mpi_host_comm(why, len(why))
    if handle == -1:
        raise OffloadError(f"pymic.mpi.host_comm: {why.value.decode(errors='replace')}")
    return MPI.Intracomm(MPI.Comm.f2py(handle))


def round_trip(device: Any, words: int = 10000) -> float:
    """Return the MPI round trip between this process and an MPI device's.

    A one-word ping-pong (``MPI_Send``, ``MPI_Recv``) between the very two
    processes an invoke travels between, on a tag of its own: the floor
    an invoke + sync on that device stands on, at the thread level the two
    processes run at.  The device's other requests that are not stream
    commands (allocations, library loads) wait meanwhile; its streams go on.

    Parameters
    ----------
    device : OffloadDevice
        An MPI device (``device.kind == "mpi"``).
    words : int, optional
        How many round trips to time, 1 to 100000000 (default 10000).

    Returns
    -------
    float
        The mean round trip in seconds.

    Raises
    ------
    OffloadError
        The device is not an MPI device, is lost, or pymic was built
        without MPI.
    TypeError
        `words` is not an int.
    ValueError
        `words` is out of range.
    """
    if isinstance(words, bool) or not isinstance(words, int):
        raise TypeError(f"pymic.mpi.round_trip: words must be an int, not "
                        f"{type(words).__name__}")
    if not 1 <= words <= 100_000_000:
        raise ValueError(f"pymic.mpi.round_trip: words must be 1 to 100000000, not {words}")
    kind = getattr(device, "kind", None)
    if kind != "mpi":
        raise OffloadError(f"pymic.mpi.round_trip: {device!r} is not an MPI device "
                           f"(kind {kind!r})")
    device.get_default_stream()  # the device is opened (started) by now
    try:
        plugin = _plugin("pymic.mpi.round_trip")
    except OSError as error:
        raise OffloadError(f"pymic.mpi.round_trip: libpymic_mpi.so is not loaded: "
                           f"{error}") from error
    call = plugin.pymic_mpi_round_trip
    call.restype = ctypes.c_int
    call.argtypes = [ctypes.c_int, ctypes.c_uint64, ctypes.POINTER(ctypes.c_double),
                     ctypes.c_char_p, ctypes.c_size_t]
    seconds = ctypes.c_double()
    why = ctypes.create_string_buffer(512)
    if call(device.device_id, words, ctypes.byref(seconds), why, len(why)) != 0:
        raise OffloadError(f"pymic.mpi.round_trip: {why.value.decode(errors='replace')}")
    return seconds.value
