"""Offload devices and the module-level device table."""

import collections.abc
import numbers
import operator
import os
import threading
from collections.abc import Iterator, Sequence
from typing import TYPE_CHECKING, Any, SupportsInt, Union, overload

from . import _engine
from ._debug import debug
from ._typing import StrPath
from .library import _PACKAGE_DIR

if TYPE_CHECKING:
    from .library import OffloadLibrary
    from .stream import OffloadStream

_ARRAY_LIBRARY = "libpymic_array.so"


class OffloadDevice:
    """A compute target with its own memory and worker threads.

    There is one object per device number: ``OffloadDevice(0) is
    pymic.devices[0]``.  Today's devices are partitions of this machine's
    cores (see PYMIC_DEVICES).

    Parameters
    ----------
    device_id : int
        Device number, ``0 <= device_id < number_of_devices()``; as
        everywhere a device number is taken, a NumPy integer or a float
        with an integral value (``1.0``, as pyMIC's dict took) works too.

    Raises
    ------
    OffloadError
        If no device has that number.
    ValueError
        For a float that is not a whole number (``1.5``).
    TypeError
        For anything that is not a number (``"1"``).
    """

    _instances: dict[int, "OffloadDevice"] = {}
    _instances_lock = threading.Lock()

    def __new__(cls, device_id: object) -> "OffloadDevice":
        device_id = _device_number_or_raise(device_id)
        with cls._instances_lock:
            device = cls._instances.get(device_id)
            if device is None:
                info = _engine.device_info(device_id)
                device = super().__new__(cls)
                device._init(device_id, info)
                cls._instances[device_id] = device
            return device

    def _init(self, device_id: int, info: "_engine.DeviceInfo") -> None:
        self._device_id = device_id
        self._info = info
        self._lock = threading.RLock()
        self._default_stream: OffloadStream | None = None
        self._libraries: dict[tuple[int, int], OffloadLibrary] = {}
        self._array_library: OffloadLibrary | None = None
        self._array_kernels: dict[str, _engine.KernelHandle] = {}

    @property
    def device_id(self) -> int:
        """int: The device number."""
        return self._device_id

    @property
    def name(self) -> str:
        """str: Human-readable name of the device, e.g. ``'host:0-1'``."""
        return self._info["name"]

    @property
    def kind(self) -> str:
        """str: Backend kind of the device, e.g. ``'host'``."""
        return self._info["kind"]

    @property
    def ncores(self) -> int:
        """int: Number of cores the device runs on."""
        return self._info["ncores"]

    @property
    def cpus(self) -> list[int]:
        """list of int: CPU numbers the device's threads are pinned to."""
        return list(self._info["cpus"])

    @property
    def host_addressable(self) -> bool:
        """bool: Whether this process can read and write the device's memory.

        True for host and process devices (their memory is mapped here at
        the device's addresses), so OffloadArrays on them export their
        device buffer through DLPack without a copy; False for a device
        whose memory is elsewhere (``__dlpack__`` raises BufferError).
        """
        return self._info["host_addressable"]

    @property
    def memory_total(self) -> int:
        """int: Bytes of device memory the device may hold."""
        return _engine.device_info(self._device_id)["memory_total"]

    @property
    def memory_used(self) -> int:
        """int: Bytes of device memory in live allocations."""
        return _engine.device_info(self._device_id)["memory_used"]

    def __repr__(self) -> str:
        return (f"<OffloadDevice {self._device_id}: {self.kind} device {self.name!r}, "
                f"{self.ncores} cores>")

    def __str__(self) -> str:
        return f"device {self._device_id} ({self.kind} {self.name}, {self.ncores} cores)"

    def __eq__(self, other: object) -> bool:
        if isinstance(other, OffloadDevice):
            return self._device_id == other._device_id
        return NotImplemented

    def __hash__(self) -> int:
        return hash(("pymic.OffloadDevice", self._device_id))

    def __reduce__(self) -> tuple[type["OffloadDevice"], tuple[int]]:
        return (OffloadDevice, (self._device_id,))

    def get_default_stream(self) -> "OffloadStream":
        """Return the device's default stream.

        There is one default stream per device, created on first use.

        Returns
        -------
        OffloadStream
            The default stream.
        """
        stream = self._default_stream
        if stream is None:
            with self._lock:
                if self._default_stream is None:
                    from .stream import OffloadStream
                    self._default_stream = OffloadStream(self)
                stream = self._default_stream
        return stream

    def create_stream(self) -> "OffloadStream":
        """Create a new stream on this device.

        Streams of one device run concurrently; each has its own worker.

        Returns
        -------
        OffloadStream
            A new stream, destroyed (after draining) when garbage-collected.
        """
        from .stream import OffloadStream
        return OffloadStream(self)

    @overload
    def load_library(self, name: StrPath, /) -> "OffloadLibrary": ...

    @overload
    def load_library(self, names: tuple[StrPath] | list[StrPath], /
                     ) -> "OffloadLibrary": ...

    @overload
    def load_library(self, names: tuple[StrPath, ...] | list[StrPath], /
                     ) -> "OffloadLibrary | list[OffloadLibrary]": ...

    @overload
    def load_library(self, first: StrPath, second: StrPath, /,
                     *names: StrPath) -> "list[OffloadLibrary]": ...

    def load_library(self, *names: Any) -> "OffloadLibrary | list[OffloadLibrary]":
        """Load one or several kernel libraries on this device.

        A bare name is searched in the directories of PYMIC_LIBRARY_PATH,
        then in the pymic package directory, then in the working directory;
        an absolute path is used as is.

        Parameters
        ----------
        *names : str or tuple or list of str
            One name loads one library; several names, or a tuple or list
            of names, load several.

        Returns
        -------
        OffloadLibrary or list of OffloadLibrary
            The library for one name (also given as a 1-tuple or 1-list,
            as pyMIC did), else a list of libraries in the order given.

        Raises
        ------
        OffloadError
            If a library is not found or cannot be loaded on this device
            (naming the file and the loader's reason).
        """
        from .library import load_libraries
        if len(names) == 1 and isinstance(names[0], (tuple, list)):
            names = tuple(names[0])
        if not names:
            raise TypeError("load_library() needs at least one library name")
        libraries = load_libraries(self, list(names))
        # As in pyMIC: one name, also as a 1-tuple, gives the library itself.
        return libraries[0] if len(libraries) == 1 else libraries

    def load_source(self, source: str, flags: Sequence[str] = (), libraries: Sequence[str] = (),
                    compiler: str | Sequence[str] | None = None) -> "OffloadLibrary":
        """Compile C kernel source (cached) and load it on this device.

        The source is compiled with the system C compiler (``PYMIC_CC``,
        else ``CC``, else ``cc``) and ``-O3 -fopenmp -fPIC -shared
        -I<pymic include>``, then `flags` and `libraries`.  The shared object
        is kept in a content-addressed cache (``PYMIC_CACHE_DIR``, else the
        XDG cache directory), so loading the same source again -- in this
        process or another -- runs no compiler.  See :func:`pymic.compile`.

        Parameters
        ----------
        source : str
            C source: ``#include <pymic_kernel.h>`` and ``PYMIC_KERNEL``
            functions.
        flags : sequence of str
            Extra compiler flags, e.g. ``("-march=native",)``.
        libraries : sequence of str
            Libraries to link: ``("openblas",)`` becomes ``-lopenblas``; a
            path is passed as is.  To link a BLAS outside the linker's
            search path, add ``-L<dir>`` and ``-Wl,-rpath,<dir>`` to `flags`.
        compiler : str or sequence of str or None
            The compiler command (default from the environment).

        Returns
        -------
        OffloadLibrary
            The loaded library; its kernels are its attributes.

        Raises
        ------
        pymic.CompileError
            (an OffloadError) if the compiler fails; the message carries its
            diagnostics, with ``pymic_source.c:LINE`` counting lines of
            `source`.
        pymic.CacheSecurityError
            (an OffloadError) if the cache could be changed by another user.
        OffloadError
            If the cache directory cannot be used or the compiled library
            cannot be loaded.

        Warns
        -----
        pymic.CompilerWarning
            When the compiler ran (not on a cache hit) and printed
            diagnostics; they stay readable as ``library.build_log``.
        """
        from ._compile import open_compiled
        from .library import _library_for_file
        # The entry was opened without following links and checked on the
        # open file: the device loads that descriptor, never the name again.
        path, fd, build_log = open_compiled(source, flags, libraries, compiler, stacklevel=2)
        try:
            status = os.fstat(fd)
            library = _library_for_file(self, path, fd, (status.st_dev, status.st_ino),
                                        build_log, checked=True)
        finally:
            os.close(fd)
        library._declare_source(source)  # every invoke is checked against the prototypes
        return library

    def sync(self) -> None:
        """Block until every stream of this device has drained.

        The GIL is released while waiting.

        Returns
        -------
        None

        Raises
        ------
        OffloadError
            If the engine reports a failure.
        """
        _engine.device_sync(self._device_id)

    def reset(self) -> None:
        """Start the device afresh after a lost device (or at any time).

        On a process device (``kind == "proc"``) the device process is
        killed if it still runs and a new one is started.  A kernel that
        crashed, called ``abort()`` or ``exit()``, or ran longer than
        ``PYMIC_KERNEL_TIMEOUT`` makes the device *lost*: every command on
        it fails with :class:`OffloadError` until ``reset()``.

        What survives: streams (they work again at once) and device
        memory, which stays allocated with whatever contents the old
        process left -- overwrite or free it.  Free device memory gives its
        pages back to the system (small freed blocks otherwise keep theirs,
        up to 64 MiB per device, for fast reuse).  What is gone: every library
        loaded on the device.  Libraries this device object cached are
        forgotten, so ``load_library`` loads them again; a kernel handle
        taken before the reset raises :class:`OffloadError` ("load its
        library again").

        On a host device there is no process to restart: nothing happens.
        Call it while no other thread uses the device.

        Returns
        -------
        None

        Raises
        ------
        OffloadError
            If a new device process cannot be started.
        """
        with self._lock:
            self._libraries = {}
            self._array_library = None
            self._array_kernels = {}
        _engine.device_reset(self._device_id)

    def _array_kernel(self, name: str) -> _engine.KernelHandle:
        """Return the handle of a built-in OffloadArray kernel.

        libpymic_array is loaded from the package directory on first use and
        the handles are cached per device.

        Parameters
        ----------
        name : str
            Kernel name, e.g. ``'pymic_array_add_float64'``.

        Returns
        -------
        pymic.kernel
            The kernel handle.
        """
        kernel = self._array_kernels.get(name)
        if kernel is None:
            with self._lock:
                if self._array_library is None:
                    from .library import OffloadLibrary
                    path = os.path.join(_PACKAGE_DIR, _ARRAY_LIBRARY)
                    self._array_library = OffloadLibrary(path, device=self)
                kernel = getattr(self._array_library, name)
                self._array_kernels[name] = kernel
        return kernel


def _device_number(key: Any) -> int | None:
    """The device number a key of ``pymic.devices`` denotes, or None.

    pyMIC's ``devices`` was a plain dict keyed by int, where a float equal to
    a key finds it (programs computed device numbers with ``/``); so ints,
    NumPy integers and integral floats denote device numbers.  This is the
    one rule for device numbers: every call that takes one uses it, through
    this function or :func:`_device_number_or_raise`.
    """
    if isinstance(key, bool):
        return int(key)
    try:
        return operator.index(key)
    except TypeError:
        pass
    if isinstance(key, numbers.Real):
        try:
            value = float(key)
        except (TypeError, ValueError, OverflowError):
            return None
        if value.is_integer():
            return int(value)
    return None


def _device_number_or_raise(value: object) -> int:
    """The device number `value` denotes (see :func:`_device_number`).

    Raises
    ------
    ValueError
        For a number that is not whole (``1.5``, NaN, infinity).
    TypeError
        For anything else that is not a number.
    """
    number = _device_number(value)
    if number is not None:
        return number
    if isinstance(value, numbers.Number):
        raise ValueError(f"device numbers are whole numbers, not {value!r}")
    raise TypeError(f"expected an OffloadDevice or a device number, not {type(value).__name__}")


class _DeviceTable(collections.abc.Mapping[int, OffloadDevice]):
    """Read-only mapping from device number to OffloadDevice."""

    def __init__(self, count: int) -> None:
        self._count = count

    def __getitem__(self, device_id: object) -> OffloadDevice:
        """Return the device with number `device_id`.

        Parameters
        ----------
        device_id : int or float
            Device number; a float with an integral value (``0.0``) works
            as in pyMIC's dict.

        Returns
        -------
        OffloadDevice
            The device.

        Raises
        ------
        KeyError
            If no device has that number, saying how many devices exist
            and how to get more.
        """
        number = _device_number(device_id)
        if number is None and isinstance(device_id, numbers.Number):
            raise KeyError(f"no offload device {device_id!r}: device numbers are whole numbers")
        if number is None or not 0 <= number < self._count:
            plural = "device" if self._count == 1 else "devices"
            raise KeyError(f"no offload device {device_id!r}: this process has "
                           f"{self._count} {plural} (numbers 0 to {self._count - 1}); set "
                           f"PYMIC_DEVICES before importing pymic for more, e.g. "
                           f"PYMIC_DEVICES=host*2 for two devices")
        return OffloadDevice(number)

    def __contains__(self, device_id: object) -> bool:
        number = _device_number(device_id)
        return number is not None and 0 <= number < self._count

    def __iter__(self) -> Iterator[int]:
        return iter(range(self._count))

    def __len__(self) -> int:
        return self._count

    def __repr__(self) -> str:
        return "{" + ", ".join(f"{i}: {self[i]!r}" for i in self) + "}"


#: Mapping from device number to :class:`OffloadDevice`.
devices = _DeviceTable(_engine.device_count())


def number_of_devices() -> int:
    """Return the number of offload devices.

    Returns
    -------
    int
        How many devices exist (at least 1).
    """
    return len(devices)


def local_device() -> OffloadDevice:
    """Return the device this process calls its own.

    Under ``PYMIC_DEVICES=host:auto`` (or ``proc:auto``) in an MPI job every
    rank of a node sees the same device list, one device per local rank
    (each a disjoint share of the node's cores), and its own is
    ``pymic.devices[local_rank]``, the local rank being what the launcher
    says (``OMPI_COMM_WORLD_LOCAL_RANK``, ``MPI_LOCALRANKID``,
    ``SLURM_LOCALID``).  With other layouts the node's ranks are grouped in
    equal blocks over the devices (local rank * devices // ranks per node,
    as codes sharing N cards among a node's ranks number them); outside an
    MPI job it is device 0.

    Returns
    -------
    OffloadDevice
        This rank's device.

    Raises
    ------
    OffloadError
        If the MPI launcher's variables are malformed.
    """
    device: OffloadDevice = devices[int(_engine.local_device_index())]
    return device


def _resolve_device(device: OffloadDevice | int | None) -> OffloadDevice:
    """Turn None, a device number or an OffloadDevice into an OffloadDevice."""
    if device is None:
        return devices[0]
    if isinstance(device, OffloadDevice):
        return device
    return OffloadDevice(_device_number_or_raise(device))


debug(1, "%d device(s)", len(devices))
