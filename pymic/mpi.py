"""pymic and MPI: the communicator of the host ranks.

With MPI devices (``PYMIC_DEVICES=mpi`` or ``mpi*N``) launched MPMD-style::

    mpirun -np 2 python app.py : -np 2 pymic-device

``MPI_COMM_WORLD`` holds the device ranks too, so the application's own MPI
code must use :func:`host_comm` instead: the host ranks only, in their
order in ``MPI_COMM_WORLD``.  With devices spawned by the program (no
device ranks on the launch line) it is ``MPI_COMM_WORLD`` itself.

This module imports mpi4py; ``import pymic`` alone never needs MPI.
"""

import ctypes
import os
from typing import Any

from ._engine import OffloadError
from .device import devices

__all__ = ["host_comm"]


def _plugin() -> ctypes.CDLL:
    # The registry opened libpymic_mpi.so from beside libpymic; opening it
    # again by the same name gives that same instance.
    path = os.path.join(os.path.dirname(os.path.abspath(__file__)), "libpymic_mpi.so")
    if not os.path.exists(path):
        raise OffloadError("pymic.mpi.host_comm: pymic was built without MPI "
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
