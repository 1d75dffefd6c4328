"""Compiling kernels from C source at run time, with a content-addressed cache.

``device.load_source(source)`` and ``pymic.compile(source)`` run the system
C compiler (``PYMIC_CC``, else ``CC``, else ``cc``) with
``-O3 -fopenmp -fPIC -shared -I<pymic include>``, the caller's flags and
libraries, and keep the shared object in a cache directory
(``PYMIC_CACHE_DIR``, else ``$XDG_CACHE_HOME/pymic``, else
``~/.cache/pymic``).  The cache key is a SHA-256 over everything that
changes the result: the source, the flags, the libraries, the compiler's
command, identity and version, pymic's version and kernel header, and the
target machine.  A second load of the same source -- in this process or
another -- opens the cached object without running the compiler.

Safety:

- entries are written to a private temporary directory and renamed into
  place, so processes compiling the same source at once never leave a
  partial file;
- the cache directory is created mode 0700; it and every entry must be
  owned by the user and writable by nobody else, and the directories above
  it must not let another user replace it, or pymic refuses to load from it
  (a library in a shared ``/tmp`` path is code another user could plant).
"""

import hashlib
import json
import os
import platform
import shlex
import shutil
import stat
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterable, Sequence
from typing import Any

from ._debug import debug
from ._engine import OffloadError

#: Flags every compile starts with.
BASE_FLAGS = ("-O3", "-fopenmp", "-fPIC", "-shared")

_SOURCE_NAME = "pymic_source.c"
_ENTRY_DIR = "kernels"
_COMPILER_DIR = "compilers"


class CompileError(OffloadError):
    """The C compiler rejected a kernel's source.

    The message holds the command and the compiler's diagnostics, whose
    ``pymic_source.c:LINE:COLUMN`` locations count lines of the source
    string passed in (line 1 is its first line).

    Attributes
    ----------
    diagnostics : str
        What the compiler printed.
    command : list of str
        The command that was run.
    returncode : int
        The compiler's exit status.
    """

    def __init__(self, message: str, diagnostics: str = "", command: Iterable[str] = (),
                 returncode: int | None = None) -> None:
        super().__init__(message)
        self.diagnostics = diagnostics
        self.command = list(command)
        self.returncode = returncode


class CacheSecurityError(OffloadError):
    """The compile cache (or an entry in it) could be changed by another user."""


# ------------------------------------------------------------- cache dir

def cache_dir() -> str:
    """Return the compile cache's directory (not created).

    Returns
    -------
    str
        ``PYMIC_CACHE_DIR``, else ``$XDG_CACHE_HOME/pymic``, else
        ``~/.cache/pymic``, as an absolute path.
    """
    configured = os.environ.get("PYMIC_CACHE_DIR")
    if configured:
        return os.path.abspath(os.path.expanduser(configured))
    base = os.environ.get("XDG_CACHE_HOME")
    if not base or not os.path.isabs(base):
        base = os.path.join(os.path.expanduser("~"), ".cache")
    return os.path.join(base, "pymic")


def _check_private(path: str, what: str, st: os.stat_result | None = None) -> None:
    """Owned by us and writable by nobody else, else CacheSecurityError."""
    st = st if st is not None else os.lstat(path)
    if stat.S_ISLNK(st.st_mode):
        raise CacheSecurityError(f"pymic compile cache: {what} {path} is a symbolic link; "
                                 f"refusing to use it")
    if st.st_uid != os.getuid():
        raise CacheSecurityError(
            f"pymic compile cache: {what} {path} is owned by uid {st.st_uid}, not by you "
            f"(uid {os.getuid()}); refusing to load code from it. Set PYMIC_CACHE_DIR to a "
            f"directory of your own.")
    if st.st_mode & (stat.S_IWGRP | stat.S_IWOTH):
        raise CacheSecurityError(
            f"pymic compile cache: {what} {path} is writable by other users (mode "
            f"{stat.S_IMODE(st.st_mode):04o}); refusing to load code from it. Run "
            f"chmod go-w on it or set PYMIC_CACHE_DIR to a private directory.")


def _check_ancestors(path: str) -> None:
    """No directory above `path` lets another user rename it away."""
    parent = os.path.dirname(path)
    while True:
        st = os.stat(parent)
        foreign = st.st_uid not in (0, os.getuid())
        shared = st.st_mode & (stat.S_IWGRP | stat.S_IWOTH) and not st.st_mode & stat.S_ISVTX
        if foreign and st.st_mode & stat.S_IWUSR or shared:
            raise CacheSecurityError(
                f"pymic compile cache: {parent} (above the cache {path}) can be changed by "
                f"other users (owner uid {st.st_uid}, mode {stat.S_IMODE(st.st_mode):04o}); "
                f"set PYMIC_CACHE_DIR to a directory only you control.")
        above = os.path.dirname(parent)
        if above == parent:
            return
        parent = above


def _private_dir(path: str, what: str) -> str:
    """Create `path` mode 0700 if missing; check it is private either way."""
    try:
        os.mkdir(path, 0o700)
    except FileExistsError:
        pass
    _check_private(path, what)
    return path


def ensure_cache_dir() -> str:
    """Create (mode 0700) and check the cache directory.

    Returns
    -------
    str
        The cache directory.

    Raises
    ------
    CacheSecurityError
        If it, or a directory above it, can be changed by another user.
    """
    root = cache_dir()
    parent = os.path.dirname(root)
    if not os.path.isdir(parent):
        os.makedirs(parent, 0o700, exist_ok=True)
    _check_ancestors(root)
    _private_dir(root, "directory")
    _private_dir(os.path.join(root, _ENTRY_DIR), "directory")
    _private_dir(os.path.join(root, _COMPILER_DIR), "directory")
    return root


# --------------------------------------------------------------- the key

def compiler_command(compiler: str | os.PathLike[str] | Sequence[str | os.PathLike[str]] | None
                     = None) -> list[str]:
    """Return the compiler command to use, as a list.

    Parameters
    ----------
    compiler : str or sequence of str or None
        Explicit command; else ``PYMIC_CC``, else ``CC``, else ``cc``.  A
        string may carry arguments (``"ccache gcc"``).

    Returns
    -------
    list of str
    """
    if compiler is None:
        compiler = os.environ.get("PYMIC_CC") or os.environ.get("CC") or "cc"
    if isinstance(compiler, (str, os.PathLike)):
        command = shlex.split(os.fspath(compiler))
    else:
        command = [os.fspath(part) for part in compiler]
    if not command:
        raise ValueError("the compiler command is empty")
    return command


_identity_lock = threading.Lock()
_identities: dict[str, str] = {}


def _compiler_identity(command: list[str], root: str) -> str:
    """The compiler's resolved path and ``--version`` output.

    ``--version`` is asked once per compiler binary (path, size, mtime,
    inode) and remembered in the cache, so a cache hit in a new process
    starts no process at all.
    """
    executable = shutil.which(command[0])
    if executable is None:
        raise CompileError(f"pymic: C compiler {command[0]!r} not found (set PYMIC_CC or CC)",
                           command=command)
    real = os.path.realpath(executable)
    st = os.stat(real)
    fingerprint = json.dumps([command, real, st.st_size, st.st_mtime_ns, st.st_ino])
    with _identity_lock:
        identity = _identities.get(fingerprint)
    if identity is not None:
        return identity
    digest = hashlib.sha256(fingerprint.encode()).hexdigest()
    record = os.path.join(root, _COMPILER_DIR, digest + ".json")
    identity = None
    try:
        _check_private(record, "entry")
        with open(record) as stream:
            identity = json.load(stream)["identity"]
    except (OSError, ValueError, KeyError, CacheSecurityError):
        pass
    if identity is None:
        try:
            result = subprocess.run([*command, "--version"], capture_output=True, text=True,
                                    timeout=60)
            version = (result.stdout or result.stderr).strip()
        except (OSError, subprocess.SubprocessError) as error:
            raise CompileError(f"pymic: cannot run the C compiler {command[0]!r}: {error}",
                               command=command) from error
        identity = f"{real}\n{version}"
        _write_atomically(record, json.dumps({"command": command, "identity": identity}),
                          root)
    with _identity_lock:
        _identities[fingerprint] = identity
    return identity


_machine: str | None = None


def _target_machine() -> str:
    """Architecture and CPU model: flags such as -march=native depend on it."""
    global _machine
    if _machine is None:
        cpu = ""
        try:
            with open("/proc/cpuinfo") as stream:
                for line in stream:
                    if line.startswith(("model name", "flags", "Features", "CPU part")):
                        cpu += line
                    elif not line.strip() and cpu:
                        break
        except OSError:
            pass
        _machine = f"{sys.platform} {platform.machine()}\n{cpu}"
    return _machine


def _pymic_fingerprint() -> str:
    from . import __version__, get_include
    header = os.path.join(get_include(), "pymic_kernel.h")
    try:
        with open(header, "rb") as stream:
            content = hashlib.sha256(stream.read()).hexdigest()
    except OSError:
        content = ""
    return f"{__version__} {content}"


def _normalise(items: str | Iterable[str], what: str) -> list[str]:
    if isinstance(items, (str, bytes, os.PathLike)):
        items = (items,)
    try:
        items = [os.fspath(item) for item in items]
    except TypeError:
        raise TypeError(f"{what} must be a sequence of strings") from None
    if not all(isinstance(item, str) for item in items):
        raise TypeError(f"{what} must be a sequence of strings")
    return items


def _library_args(libraries: list[str]) -> list[str]:
    """``-lname`` for a bare name; a path (with '/') is passed as it is."""
    return [name if "/" in name or name.startswith("-") else f"-l{name}" for name in libraries]


# ------------------------------------------------------------- compiling

def _write_atomically(path: str, text: str, root: str) -> None:
    handle, temporary = tempfile.mkstemp(dir=os.path.dirname(path), prefix=".tmp-")
    try:
        with os.fdopen(handle, "w") as stream:
            stream.write(text)
        os.replace(temporary, path)
    except BaseException:
        try:
            os.unlink(temporary)
        except OSError:
            pass
        raise


def compile(source: str, flags: Sequence[str] = (), libraries: Sequence[str] = (),
            compiler: str | Sequence[str] | None = None) -> str:
    """Compile C kernel source into a cached shared object, ahead of time.

    The same call later (in any process) returns the cached file without
    running the compiler; ``device.load_source`` with the same arguments
    loads it.

    Parameters
    ----------
    source : str
        C source of one or more kernels (``#include <pymic_kernel.h>`` and
        ``PYMIC_KERNEL`` functions).
    flags : sequence of str
        Extra compiler flags, after ``-O3 -fopenmp -fPIC -shared -I<pymic>``
        (e.g. ``("-march=native", "-I/opt/include")``).
    libraries : sequence of str
        Libraries to link: a bare name becomes ``-l<name>``
        (``("openblas",)``); a path is passed as is.
    compiler : str or sequence of str or None
        The compiler command; default ``PYMIC_CC``, else ``CC``, else ``cc``.

    Returns
    -------
    str
        Absolute path of the cached shared object.

    Raises
    ------
    TypeError
        If `source` is not a str, or flags/libraries are not strings.
    CompileError
        If the compiler fails (its diagnostics are in the message), or is
        not found.
    CacheSecurityError
        If the cache directory or entry could be changed by another user.
    """
    if not isinstance(source, str):
        raise TypeError(f"source must be a str of C code, not {type(source).__name__}")
    flags = _normalise(flags, "flags")
    libraries = _normalise(libraries, "libraries")
    command = compiler_command(compiler)
    root = ensure_cache_dir()
    key = hashlib.sha256(json.dumps({
        "source": source, "flags": flags, "libraries": libraries, "command": command,
        "compiler": _compiler_identity(command, root), "pymic": _pymic_fingerprint(),
        "machine": _target_machine(), "base": BASE_FLAGS,
    }, sort_keys=True).encode()).hexdigest()
    entries = os.path.join(root, _ENTRY_DIR)
    target = os.path.join(entries, key + ".so")
    try:
        st = os.lstat(target)
    except FileNotFoundError:
        st = None
    if st is not None:
        _check_private(target, "entry", st)
        debug(1, "load_source: cache hit %s", target)
        return target
    start = time.perf_counter()
    _build(source, flags, libraries, command, entries, key)
    _check_private(target, "entry")
    debug(1, "load_source: compiled %s in %.0f ms", target, (time.perf_counter() - start) * 1e3)
    return target


def _build(source: str, flags: list[str], libraries: list[str], command: list[str],
           entries: str, key: str) -> None:
    from . import get_include
    workdir = tempfile.mkdtemp(prefix=".build-", dir=entries)
    try:
        with open(os.path.join(workdir, _SOURCE_NAME), "w") as stream:
            stream.write(source)
        full = [*command, *BASE_FLAGS, f"-I{get_include()}", *flags, "-o", "out.so",
                _SOURCE_NAME, *_library_args(libraries)]
        try:
            result = subprocess.run(full, cwd=workdir, capture_output=True, text=True)
        except OSError as error:
            raise CompileError(f"pymic: cannot run the C compiler {command[0]!r}: {error}",
                               command=full) from error
        diagnostics = (result.stderr + result.stdout).strip()
        if result.returncode != 0:
            raise CompileError(
                f"pymic: compiling kernel source failed (exit status {result.returncode})\n"
                f"command: {shlex.join(full)}\n{diagnostics}",
                diagnostics=diagnostics, command=full, returncode=result.returncode)
        os.chmod(os.path.join(workdir, "out.so"), 0o700)
        metadata = {"key": key, "created": time.time(), "command": full,
                    "source_lines": source.count("\n") + 1, "source_head": source[:400],
                    "warnings": diagnostics}
        with open(os.path.join(workdir, "meta.json"), "w") as stream:
            json.dump(metadata, stream)
        with open(os.path.join(workdir, "source.c"), "w") as stream:
            stream.write(source)
        # Metadata first: an entry whose .so exists always has them.
        os.replace(os.path.join(workdir, "meta.json"), os.path.join(entries, key + ".json"))
        os.replace(os.path.join(workdir, "source.c"), os.path.join(entries, key + ".c"))
        os.replace(os.path.join(workdir, "out.so"), os.path.join(entries, key + ".so"))
    finally:
        shutil.rmtree(workdir, ignore_errors=True)


# ------------------------------------------------------------------ cache

def cache_entries() -> list[dict[str, Any]]:
    """Describe the compiled kernels in the cache.

    Returns
    -------
    list of dict
        One dict per entry: ``key``, ``path``, ``bytes``, ``created``
        (seconds since the epoch), ``command`` and ``source_head``.
    """
    entries = os.path.join(cache_dir(), _ENTRY_DIR)
    if not os.path.isdir(entries):
        return []
    found = []
    for name in sorted(os.listdir(entries)):
        if not name.endswith(".so"):
            continue
        key = name[:-3]
        path = os.path.join(entries, name)
        info: dict[str, Any] = {"key": key, "path": path, "bytes": os.path.getsize(path),
                "created": os.path.getmtime(path), "command": [], "source_head": ""}
        try:
            with open(os.path.join(entries, key + ".json")) as stream:
                meta = json.load(stream)
            info.update(created=meta.get("created", info["created"]),
                        command=meta.get("command", []),
                        source_head=meta.get("source_head", ""))
        except (OSError, ValueError):
            pass
        found.append(info)
    found.sort(key=lambda entry: entry["created"])
    return found


def clear_cache() -> int:
    """Remove every compiled kernel (and remembered compiler versions).

    Libraries already loaded stay usable: their files are unlinked, not
    overwritten.

    Returns
    -------
    int
        How many compiled kernels were removed.
    """
    root = cache_dir()
    removed = 0
    for sub in (_ENTRY_DIR, _COMPILER_DIR):
        directory = os.path.join(root, sub)
        if not os.path.isdir(directory):
            continue
        _check_private(directory, "directory")
        for name in os.listdir(directory):
            path = os.path.join(directory, name)
            if os.path.isdir(path) and not os.path.islink(path):
                shutil.rmtree(path, ignore_errors=True)
                continue
            if sub == _ENTRY_DIR and name.endswith(".so"):
                removed += 1
            try:
                os.unlink(path)
            except FileNotFoundError:
                pass
    return removed
