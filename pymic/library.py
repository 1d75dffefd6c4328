"""Kernel libraries: finding, loading and looking up kernels."""

import os
from typing import TYPE_CHECKING, List, Optional, Tuple, Union

from . import _engine
from ._debug import debug
from ._engine import OffloadError
from ._typing import StrPath

if TYPE_CHECKING:
    from .device import OffloadDevice

if TYPE_CHECKING:
    from .device import OffloadDevice

_PACKAGE_DIR = os.path.dirname(os.path.abspath(__file__))


def search_path() -> list[str]:
    """Return the directories a bare library name is searched in.

    Returns
    -------
    list of str
        PYMIC_LIBRARY_PATH's directories (``os.pathsep``-separated), the
        package directory, then the working directory.
    """
    entries = os.environ.get("PYMIC_LIBRARY_PATH", "").split(os.pathsep)
    return [entry for entry in entries if entry] + [_PACKAGE_DIR, os.getcwd()]


def find_library(name: StrPath) -> str:
    """Resolve a library name to the file that will be loaded.

    Parameters
    ----------
    name : str or os.PathLike
        A bare name (or relative path) to search for, or an absolute path.

    Returns
    -------
    str
        Absolute path of the library file.

    Raises
    ------
    OffloadError
        If the file does not exist, naming it and the directories searched.
    """
    name = os.fspath(name)
    if os.path.isabs(name):
        if not os.path.exists(name):
            raise OffloadError(f"cannot load library {name}: no such file")
        return name
    directories = search_path()
    for directory in directories:
        candidate = os.path.join(directory, name)
        if os.path.isfile(candidate):
            return os.path.abspath(candidate)
    raise OffloadError(f"cannot find library {name!r} in PYMIC_LIBRARY_PATH, the pymic "
                       f"package or the working directory (searched: "
                       f"{os.pathsep.join(directories)})")


def _open_library(path: str) -> Tuple[int, Tuple[int, int]]:
    """Open a library file for loading; its descriptor and (device, inode).

    The device loads this open file, so the identity is that of the file
    that runs, whatever `path` names later.
    """
    try:
        fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
    except OSError as error:
        raise OffloadError(f"cannot load library {path}: {error.strerror}") from None
    status = os.fstat(fd)
    return fd, (status.st_dev, status.st_ino)


def load_libraries(device: "OffloadDevice",
                   names: list[StrPath]) -> list["OffloadLibrary"]:
    """Load libraries on a device, reusing ones it already loaded.

    A library is a file, not a name: each is opened once and the device
    loads that open file.  A file reached through another path (a symbolic
    or hard link, a relative path) is the same library; a library rebuilt
    at the same path (a new file, as a linker writes it) is a new one that
    runs the new code.  They are told apart by the file's identity
    (``st_dev``, ``st_ino``), not by its name.

    Parameters
    ----------
    device : OffloadDevice
        Target device.
    names : list of str
        Library names or paths.

    Returns
    -------
    list of OffloadLibrary
        One library per name, in order.
    """
    libraries: list[OffloadLibrary] = []
    for name in names:
        path = find_library(name)
        fd, key = _open_library(path)
        try:
            libraries.append(_library_for_file(device, path, fd, key, checked=False))
        finally:
            os.close(fd)
    return libraries


def _library_for_file(device: "OffloadDevice", path: str, fd: int, key: Tuple[int, int],
                      build_log: Optional[str] = None, *,
                      checked: bool) -> "OffloadLibrary":
    """The device's library of the file open as `fd`, loaded if new.

    A `checked` file (a compile-cache entry, checked on the open file) is
    loaded only through `fd`; any other may be loaded by `path` when that
    gives the very same file, so that ``$ORIGIN`` names its directory.
    """
    with device._lock:
        library = device._libraries.get(key)
        if library is None:
            library = OffloadLibrary(path, device=device, _fd=fd, _checked=checked)
            device._libraries[key] = library
        if build_log is not None:
            library._build_log = build_log
    return library


class KernelNotFoundError(OffloadError, AttributeError):
    """A library does not export the kernel asked for.

    An :class:`OffloadError` (as every engine failure) and an
    :class:`AttributeError`, so that ``hasattr(library, name)`` and tools
    probing attributes see an ordinary missing attribute.
    """


class OffloadLibrary:
    """A shared object of kernels loaded on a device.

    Kernels are attributes: ``library.my_kernel`` returns the handle of the
    exported function ``my_kernel``, a tuple ``(name, address, device,
    library)`` as in pyMIC, to pass to :meth:`OffloadStream.invoke`.  Any
    exported name works, ``library._bb`` included;
    ``library.get_kernel(name)`` takes the name as a string (for names that
    are not identifiers).  Handles are cached.  Usually obtained from
    :meth:`OffloadDevice.load_library`.

    Parameters
    ----------
    library : str or os.PathLike
        Library name (searched as ``load_library`` does) or absolute path.
    device : OffloadDevice, optional
        Device to load on; default ``pymic.devices[0]``.

    Raises
    ------
    OffloadError
        If the library is not found or not loadable on the device.
    """

    def __init__(self, library: StrPath, device: "OffloadDevice | int | None" = None, *,
                 _fd: Optional[int] = None, _checked: bool = True) -> None:
        from .device import _resolve_device
        device = _resolve_device(device)
        path = os.fspath(library) if _fd is not None else find_library(library)
        debug(1, "loading library %s on device %d", path, device.device_id)
        if _fd is None:
            self._library = _engine.Library(device.device_id, path)
        else:
            # The very file the caller opened (and maybe checked) is loaded.
            self._library = _engine.Library(device.device_id, path, _fd, _checked)
        self._device = device
        self._path = path
        self._name = os.path.basename(path)
        self._kernels: dict[str, _engine.KernelHandle] = {}
        # kernel name -> the Signature invoke checks its arguments against
        self._signatures: dict[str, _engine.Signature] = {}
        self._declared_sources: set[str] = set()  # load_source texts already declared
        self._build_log: Optional[str] = None

    @property
    def name(self) -> str:
        """str: File name of the library."""
        return self._name

    @property
    def path(self) -> str:
        """str: Full path the library was loaded from."""
        return self._path

    @property
    def device(self) -> "OffloadDevice":
        """OffloadDevice: The device the library is loaded on."""
        return self._device

    @property
    def build_log(self) -> Optional[str]:
        """str or None: What the compiler printed when it built this library.

        For a library from :meth:`OffloadDevice.load_source` (warnings,
        notes; ``""`` for a clean build), also when it came from the cache;
        ``None`` for a library loaded by name, which pymic did not compile.
        """
        return self._build_log

    def get_kernel(self, name: str) -> _engine.KernelHandle:
        """Return the handle of the kernel `name`.

        The same as ``library.<name>``, for names that are not Python
        identifiers or that the attribute syntax would treat specially.

        Parameters
        ----------
        name : str
            Name of a function the library exports.

        Returns
        -------
        pymic.kernel
            Tuple-like handle ``(name, address, device, library)``.

        Raises
        ------
        TypeError
            If `name` is not a str.
        ValueError
            If `name` contains a NUL character.
        KernelNotFoundError
            If the library does not export a function of that name (an
            OffloadError and an AttributeError).
        """
        if not isinstance(name, str):
            raise TypeError(f"a kernel name must be a str, not {type(name).__name__}")
        kernel = self._kernels.get(name)
        if kernel is None:
            try:
                kernel = self._library.kernel(name, self._device, self)
            except OffloadError as error:
                # The engine's message names the kernel and the library.
                raise KernelNotFoundError(str(error)) from None
            debug(2, "found kernel %s in %s at %#x", name, self._name, kernel[1])
            signature = self._signatures.get(name)
            if signature is not None:
                _engine.set_kernel_signature(kernel, signature)
            self._kernels[name] = kernel
        return kernel

    def declare(self, *declarations: "str | os.PathLike[str]") -> list[str]:
        """Declare kernels' C prototypes, so that every invoke is checked.

        Once declared, an invoke of the kernel checks, before anything is
        enqueued, the number of arguments and the element type of each
        (an ndarray's or OffloadArray's dtype, ``int`` as int64, ``float``
        as double, ``complex`` as double complex, NumPy scalars as their
        dtype); a mismatch raises TypeError naming the argument, what was
        given and what the kernel takes.  ndarrays given to ``const``
        pointers are not copied back.  ``void *``, pointers to pointers,
        device pointers and None are not checked.  Kernels never declared
        keep pyMIC's unchecked behaviour; ``device.load_source`` declares
        its ``PYMIC_KERNEL`` functions itself.

        Parameters
        ----------
        *declarations : str or os.PathLike
            C prototypes, one or several per string
            (``"void scale(double *a, const int64_t *n);"``), or the path of
            a header file to read.  Every prototype in a string must name a
            kernel of this library.  A header may declare more: functions
            the library does not export, and exported ones that are no
            kernels pymic can check (a return value, a parameter that is not
            a pointer, an element type it cannot read), are left alone; but
            it must declare at least one kernel of the library.

        Returns
        -------
        list of str
            The names of the kernels declared, in order.

        Raises
        ------
        ValueError
            (pymic's SignatureError) for a prototype in a string that pymic
            cannot read, or that no kernel can have (a return type other
            than void, a parameter that is not a pointer); a header that
            declares no kernel of the library.  Nothing is declared then.
        KernelNotFoundError
            If a prototype in a string names a function the library does
            not export.
        OSError
            If a header file cannot be read.
        """
        from . import _signatures
        found: list[tuple[_signatures.Prototype, _engine.Signature]] = []
        for item in declarations:
            prototypes, errors = _signatures.read_declarations(item)
            if not _signatures.is_header_path(item):
                found.extend((p, p.engine_signature()) for p in prototypes)
                continue
            # A header declares more than kernels (a library's other
            # functions, kernels of other libraries): those are left alone.
            unreadable = [str(error) for name, error in errors.items() if self._exports(name)]
            for reason in unreadable:
                debug(1, "declare: %s: stays unchecked: %s", os.fspath(item), reason)
            kernels = [p for p in prototypes if self._exports(p.name)]
            if not kernels:
                why = ("; of the functions the library exports: " + "; ".join(unreadable)
                       if unreadable else "")
                raise ValueError(f"declare: the header {os.fspath(item)} declares no kernel of "
                                 f"{self._name} that pymic can check{why}")
            found.extend((p, p.engine_signature()) for p in kernels)
        for prototype, _ in found:
            self.get_kernel(prototype.name)  # KernelNotFoundError before any change
        for prototype, signature in found:
            self._set_signature(prototype.name, signature)
        return [prototype.name for prototype, _ in found]

    def _exports(self, name: str) -> bool:
        try:
            self.get_kernel(name)
        except KernelNotFoundError:
            return False
        return True

    def _set_signature(self, name: str, signature: _engine.Signature) -> None:
        self._signatures[name] = signature
        kernel = self._kernels.get(name)
        if kernel is not None:
            _engine.set_kernel_signature(kernel, signature)

    def _declare_source(self, source: str) -> None:
        """Declare the ``PYMIC_KERNEL`` functions of `source` (load_source).

        A kernel whose prototype pymic cannot read stays unchecked.
        """
        from . import _signatures
        if source in self._declared_sources:
            return  # loaded again (a cache hit): nothing to parse
        self._declared_sources.add(source)
        for name, prototype in _signatures.kernels_of_source(source).items():
            if isinstance(prototype, _signatures.SignatureError):
                debug(1, "load_source: %s stays unchecked: %s", name, prototype)
            elif self._exports(name):
                self._set_signature(name, prototype.engine_signature())

    def __getattr__(self, name: str) -> _engine.KernelHandle:
        # Reached only for names not found normally.  Special names (and
        # every name before __init__ ran, e.g. while unpickling) never reach
        # the engine, so copy, pickle and hasattr probes behave as for any
        # object; any other name, '_bb' included, is a kernel as in pyMIC.
        if (name.startswith("__") and name.endswith("__")) or "_library" not in self.__dict__:
            raise AttributeError(name)
        kernel = self.get_kernel(name)
        self.__dict__[name] = kernel  # later lookups skip __getattr__
        return kernel

    def __repr__(self) -> str:
        return f"<OffloadLibrary {self._path!r} on device {self._device.device_id}>"
