"""Compiling kernels from C source at run time, with a content-addressed cache.

``device.load_source(source)`` and ``pymic.compile(source)`` run the system
C compiler (``PYMIC_CC``, else ``CC``, else ``cc``) with
``-O3 -fopenmp -fPIC -shared -I<pymic include>``, the caller's flags and
libraries, and keep the shared object in a cache directory
(``PYMIC_CACHE_DIR``, else ``$XDG_CACHE_HOME/pymic``, else
``~/.cache/pymic``).  The cache key is a SHA-256 over everything that
changes the result: the source, the flags, the libraries, the compiler's
command, identity and version, pymic's version and kernel header, the
target machine -- and the content of every file the compiler read (the
headers it included, from the dependency list it writes with ``-MD``).
A second load of the same source -- in this process or another -- opens
the cached object without running the compiler.

Safety:

- entries are written to a private temporary directory and renamed into
  place, so processes compiling the same source at once never leave a
  partial file;
- the cache directory is resolved to its real path once (a symbolic link
  on the way must be the user's or root's) and every directory of that
  real path must be the user's or root's, writable by nobody else (or
  sticky): nobody else can then replace anything in it.  The cache
  directory is created mode 0700 and must be the user's alone;
- an entry is opened with ``O_NOFOLLOW`` and checked on the open file
  (``fstat``: a regular file, the user's, writable by nobody else), and the
  device loads that open file -- never the name again.  Otherwise pymic
  refuses with :class:`CacheSecurityError`.
"""

import errno
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
import warnings
from collections.abc import Iterable, Sequence
from typing import Any, Dict, List, Optional, Tuple, Union

from ._debug import debug
from ._engine import OffloadError

#: Flags every compile starts with.
BASE_FLAGS = ("-O3", "-fopenmp", "-fPIC", "-shared")

_SOURCE_NAME = "pymic_source.c"
_DEPS_NAME = "pymic_source.d"
_ENTRY_DIR = "kernels"
_COMPILER_DIR = "compilers"
_MANIFEST_DIR = "manifests"
#: Header versions remembered per source (older ones are compiled again).
_MANIFEST_VARIANTS = 8


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


class CompilerWarning(UserWarning):
    """The C compiler printed warnings while it built kernel source.

    Issued (with :mod:`warnings`) by the call that ran the compiler; a
    later load of the same source comes from the cache and warns no more.
    ``python -W error::pymic.CompilerWarning`` turns it into an error.  The
    whole build log stays readable as ``library.build_log``.
    """


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


def _trusted(uid: int) -> bool:
    return uid in (0, os.getuid())


def _not_a_directory(configured: str, where: str) -> OffloadError:
    return OffloadError(
        f"pymic compile cache: {where} is not a directory, so the cache {configured} "
        f"cannot be there; set PYMIC_CACHE_DIR to a directory (or a path pymic may "
        f"create)")


def _real_path(configured: str) -> str:
    """Resolve `configured` to its real path, component by component.

    A symbolic link on the way is followed once, here; it must be the
    user's or root's (another user could point it elsewhere at any time).
    Components past the last existing one are kept as they are (pymic
    creates them).
    """
    if not os.path.isabs(configured):
        configured = os.path.join(os.getcwd(), configured)
    pending = [part for part in configured.split("/") if part]
    real = "/"
    links = 0
    while pending:
        part = pending.pop(0)
        if part == ".":
            continue
        if part == "..":
            real = os.path.dirname(real)
            continue
        candidate = os.path.join(real, part)
        try:
            st = os.lstat(candidate)
        except FileNotFoundError:
            return os.path.normpath(os.path.join(candidate, *pending))
        except NotADirectoryError:
            raise _not_a_directory(configured, real) from None
        if stat.S_ISLNK(st.st_mode):
            if not _trusted(st.st_uid):
                raise CacheSecurityError(
                    f"pymic compile cache: {candidate} (on the way to the cache {configured}) "
                    f"is a symbolic link owned by uid {st.st_uid}, who can point it elsewhere "
                    f"at any time; set PYMIC_CACHE_DIR to a path without it.")
            links += 1
            if links > 40:
                raise OffloadError(f"pymic compile cache: too many symbolic links in "
                                   f"{configured}")
            target = os.readlink(candidate)
            if target.startswith("/"):
                real = "/"
            pending[:0] = [p for p in target.split("/") if p]
            continue
        if pending and not stat.S_ISDIR(st.st_mode):
            raise _not_a_directory(configured, candidate)
        real = candidate
    return real


def _check_ancestor(path: str, st: os.stat_result, cache: str) -> None:
    """A directory above the cache: nobody but the user and root may change it."""
    if not _trusted(st.st_uid):
        raise CacheSecurityError(
            f"pymic compile cache: {path} (above the cache {cache}) is owned by uid "
            f"{st.st_uid}, who can replace what is in it (whatever its mode: its owner can "
            f"change the mode back); set PYMIC_CACHE_DIR to a directory only you and root "
            f"control.")
    if st.st_mode & (stat.S_IWGRP | stat.S_IWOTH) and not st.st_mode & stat.S_ISVTX:
        raise CacheSecurityError(
            f"pymic compile cache: {path} (above the cache {cache}) can be changed by other "
            f"users (mode {stat.S_IMODE(st.st_mode):04o}, no sticky bit); set PYMIC_CACHE_DIR "
            f"to a directory only you control.")


def _check_private(path: str, what: str, st: Optional[os.stat_result] = None) -> None:
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


def _private_dir(path: str, configured: str) -> str:
    """Create `path` mode 0700 if missing; check it is a private directory."""
    try:
        os.mkdir(path, 0o700)
    except FileExistsError:
        pass
    except NotADirectoryError:
        raise _not_a_directory(configured, os.path.dirname(path)) from None
    st = os.lstat(path)
    _check_private(path, "directory", st)
    if not stat.S_ISDIR(st.st_mode):
        raise _not_a_directory(configured, path)
    return path


def ensure_cache_dir() -> str:
    """Create (mode 0700) and check the cache directory.

    The configured path is resolved to its real path once; every directory
    of it must be the user's or root's and writable by nobody else (or
    sticky), so that nobody else can replace what pymic checks.

    Returns
    -------
    str
        The cache directory's real path (use it, not the configured one).

    Raises
    ------
    CacheSecurityError
        If it, a directory above it or a symbolic link on the way to it
        can be changed by another user.
    OffloadError
        If it cannot be a directory (a file is in the way) or cannot be
        created.
    """
    configured = cache_dir()
    try:
        root = _real_path(configured)
        # Missing directories above the cache are created private, one by one.
        existing = root
        missing = []
        while not os.path.lexists(existing):
            missing.append(existing)
            existing = os.path.dirname(existing)
        for directory in reversed(missing[1:]):
            try:
                os.mkdir(directory, 0o700)
            except FileExistsError:
                pass
        above = os.path.dirname(root)
        chain = []
        while True:
            chain.append(above)
            if above == "/":
                break
            above = os.path.dirname(above)
        for directory in reversed(chain):
            st = os.lstat(directory)
            if not stat.S_ISDIR(st.st_mode):
                raise _not_a_directory(configured, directory)
            _check_ancestor(directory, st, configured)
        _private_dir(root, configured)
        for sub in (_ENTRY_DIR, _COMPILER_DIR, _MANIFEST_DIR):
            _private_dir(os.path.join(root, sub), configured)
    except NotADirectoryError as error:
        raise _not_a_directory(configured, error.filename or configured) from None
    except OffloadError:
        raise
    except OSError as error:
        raise OffloadError(f"pymic compile cache: cannot use {configured}: "
                           f"{error.strerror} ({error.filename}); set PYMIC_CACHE_DIR to a "
                           f"directory you can write") from None
    return root


def _open_private(path: str, what: str) -> int:
    """Open a cache file without following a link, checked on the open file.

    Returns
    -------
    int
        A descriptor of the regular file that was checked (the caller
        closes it).

    Raises
    ------
    FileNotFoundError
        If there is no such file.
    CacheSecurityError
        If it is a symbolic link, not a regular file, not the user's or
        writable by others.
    """
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC | os.O_NONBLOCK)
    except OSError as error:
        if error.errno == errno.ELOOP:
            raise CacheSecurityError(f"pymic compile cache: {what} {path} is a symbolic "
                                     f"link; refusing to use it") from None
        raise
    try:
        st = os.fstat(fd)
        _check_private(path, what, st)
        if not stat.S_ISREG(st.st_mode):
            raise CacheSecurityError(f"pymic compile cache: {what} {path} is not a regular "
                                     f"file; refusing to use it")
    except BaseException:
        os.close(fd)
        raise
    return fd


def _read_private(path: str, what: str) -> str:
    fd = _open_private(path, what)
    with os.fdopen(fd, encoding="utf-8") as stream:
        return stream.read()


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
        identity = json.loads(_read_private(record, "entry"))["identity"]
    except (OSError, ValueError, KeyError, TypeError, CacheSecurityError):
        pass
    if identity is None:
        try:
            result = subprocess.run([*command, "--version"], capture_output=True,
                                    encoding="utf-8", errors="replace", timeout=60)
            version = (result.stdout or result.stderr).strip()
        except (OSError, subprocess.SubprocessError) as error:
            raise CompileError(f"pymic: cannot run the C compiler {command[0]!r}: {error}",
                               command=command) from error
        identity = f"{real}\n{version}"
        _write_atomically(record, json.dumps({"command": command, "identity": identity}))
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
        content = _file_digest(header)
    except OSError:
        content = ""
    return f"{__version__} {content}"


#: path -> (stat stamp, SHA-256 of the content): a file whose stamp has
#: not changed is not read again by this process.
_digests: Dict[str, Tuple[Tuple[int, ...], str]] = {}


def _file_digest(path: str) -> str:
    st = os.stat(path)
    stamp = (st.st_dev, st.st_ino, st.st_size, st.st_mtime_ns, st.st_ctime_ns)
    known = _digests.get(path)
    if known is not None and known[0] == stamp:
        return known[1]
    # Stamped before reading: a change while reading gives a new stamp
    # next time, so the content is hashed again.  File times are coarse (a
    # clock tick): a file changed in the last seconds could change again
    # with the same stamp, so it is not remembered (git's "racy" rule).
    with open(path, "rb") as stream:
        digest = hashlib.sha256(stream.read()).hexdigest()
    if max(st.st_mtime_ns, st.st_ctime_ns) < time.time_ns() - 2_000_000_000:
        _digests[path] = (stamp, digest)
    return digest


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


def _library_args(libraries: Sequence[str]) -> list[str]:
    """``-lname`` for a bare name; a path (with '/') is passed as it is."""
    return [name if "/" in name or name.startswith("-") else f"-l{name}" for name in libraries]


# ------------------------------------------------------------- compiling

def _write_atomically(path: str, text: str) -> None:
    handle, temporary = tempfile.mkstemp(dir=os.path.dirname(path), prefix=".tmp-")
    try:
        with os.fdopen(handle, "w", encoding="utf-8") as stream:
            stream.write(text)
        os.replace(temporary, path)
    except BaseException:
        try:
            os.unlink(temporary)
        except OSError:
            pass
        raise


def _check_source(source: object) -> str:
    if not isinstance(source, str):
        raise TypeError(f"source must be a str of C code, not {type(source).__name__}")
    try:
        source.encode("utf-8")
    except UnicodeEncodeError as error:
        raise ValueError(f"the kernel source cannot be written as UTF-8 (character "
                         f"{source[error.start]!r} at index {error.start}: a lone "
                         f"surrogate)") from None
    return source


def compile(source: str, flags: Sequence[str] = (), libraries: Sequence[str] = (),
            compiler: Union[str, Sequence[str], None] = None) -> str:
    """Compile C kernel source into a cached shared object, ahead of time.

    The same call later (in any process) returns the cached file without
    running the compiler, unless a file the compiler read (a header the
    source includes) has changed since; ``device.load_source`` with the
    same arguments loads it.  Warnings of the compiler are issued as
    :class:`pymic.CompilerWarning` by the call that ran it.

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
    ValueError
        If `source` holds a character UTF-8 cannot encode.
    CompileError
        If the compiler fails (its diagnostics are in the message), or is
        not found.
    CacheSecurityError
        If the cache directory or entry could be changed by another user.
    OffloadError
        If the cache directory cannot be used (a file in the way).
    """
    path, fd, _ = open_compiled(source, flags, libraries, compiler, stacklevel=2)
    os.close(fd)
    return path


def open_compiled(source: str, flags: Sequence[str] = (), libraries: Sequence[str] = (),
                  compiler: Union[str, Sequence[str], None] = None,
                  stacklevel: int = 2) -> Tuple[str, int, str]:
    """Compile (or find in the cache) and open the shared object, checked.

    Parameters
    ----------
    source, flags, libraries, compiler
        As for :func:`compile`.
    stacklevel : int
        Where a :class:`CompilerWarning` points, counted from this
        function's caller (2: the caller's caller).

    Returns
    -------
    path : str
        The cache entry's path (for messages and ``library.path``).
    fd : int
        A descriptor of the entry, opened without following links and
        checked on the open file: load this, not the path (the caller
        closes it).
    build_log : str
        What the compiler printed when it built the entry.

    Raises
    ------
    As :func:`compile`.
    """
    source = _check_source(source)
    flags = _normalise(flags, "flags")
    libraries = _normalise(libraries, "libraries")
    command = compiler_command(compiler)
    root = ensure_cache_dir()
    direct = hashlib.sha256(json.dumps({
        "source": source, "flags": flags, "libraries": libraries, "command": command,
        "compiler": _compiler_identity(command, root), "pymic": _pymic_fingerprint(),
        "machine": _target_machine(), "base": BASE_FLAGS,
    }, sort_keys=True).encode()).hexdigest()
    entries = os.path.join(root, _ENTRY_DIR)
    manifest = os.path.join(root, _MANIFEST_DIR, direct + ".json")
    for key in _known_keys(manifest, direct):
        try:
            fd = _open_private(os.path.join(entries, key + ".so"), "entry")
        except FileNotFoundError:
            continue
        debug(1, "load_source: cache hit %s", os.path.join(entries, key + ".so"))
        return os.path.join(entries, key + ".so"), fd, _build_log(entries, key)
    start = time.perf_counter()
    key, diagnostics = _build(source, flags, libraries, command, entries, manifest, direct)
    target = os.path.join(entries, key + ".so")
    fd = _open_private(target, "entry")
    debug(1, "load_source: compiled %s in %.0f ms", target, (time.perf_counter() - start) * 1e3)
    if diagnostics:
        try:
            warnings.warn(CompilerWarning(
                f"pymic: the C compiler printed diagnostics while building kernel source "
                f"(pymic_source.c:LINE counts lines of the source string):\n{diagnostics}"),
                stacklevel=stacklevel + 1)
        except BaseException:
            os.close(fd)
            raise
    return target, fd, diagnostics


def _build_log(entries: str, key: str) -> str:
    try:
        return str(json.loads(_read_private(os.path.join(entries, key + ".json"),
                                            "entry"))["warnings"])
    except (OSError, ValueError, KeyError, TypeError, CacheSecurityError):
        return ""


def _dependency_digests(files: Sequence[str]) -> Optional[List[List[str]]]:
    """[[file, sha256 of its content]] for each file; None if one is gone."""
    digests: List[List[str]] = []
    for path in files:
        try:
            digests.append([path, _file_digest(path)])
        except OSError:
            return None
    return digests


def _entry_key(direct: str, digests: Sequence[Sequence[str]]) -> str:
    return hashlib.sha256(json.dumps([direct, list(map(list, digests))]).encode()).hexdigest()


def _known_keys(manifest: str, direct: str) -> List[str]:
    """The entries this source may have with the files it reads as they are now.

    The manifest lists, for the source's direct key, the files each build
    read (several lists when flags or macros chose other headers); an
    entry's key covers those files' contents, so a changed header gives a
    key with no entry: a miss.
    """
    try:
        variants = json.loads(_read_private(manifest, "manifest"))["variants"]
    except (OSError, ValueError, KeyError, TypeError, CacheSecurityError):
        return []
    keys: List[str] = []
    for files in reversed(variants):
        if not isinstance(files, list) or not all(isinstance(f, str) for f in files):
            continue
        digests = _dependency_digests(files)
        if digests is not None:
            keys.append(_entry_key(direct, digests))
    return keys


def _read_dependencies(path: str, workdir: str) -> Optional[List[str]]:
    """The files a -MD dependency file lists (not the source itself)."""
    try:
        with open(path, encoding="utf-8", errors="surrogateescape") as stream:
            text = stream.read()
    except OSError:
        return None
    text = text.replace("\\\n", " ")
    names: List[str] = []
    current, escaped = "", False
    for char in text:
        if escaped:
            current += char
            escaped = False
        elif char == "\\":
            escaped = True
        elif char.isspace():
            if current:
                names.append(current)
            current = ""
        else:
            current += char
    if current:
        names.append(current)
    files: List[str] = []
    for name in names:
        if name.endswith(":"):
            continue  # the target
        name = name.replace("$$", "$")
        if name == _SOURCE_NAME:
            continue
        full = os.path.normpath(os.path.join(workdir, name))
        if full not in files:
            files.append(full)
    return files


def _unchanged_since(files: Sequence[str], started_ns: int) -> bool:
    try:
        return all(os.stat(path).st_mtime_ns < started_ns for path in files)
    except OSError:
        return False


def _remember(manifest: str, files: List[str]) -> None:
    try:
        variants = json.loads(_read_private(manifest, "manifest"))["variants"]
        if not isinstance(variants, list):
            variants = []
    except (OSError, ValueError, KeyError, TypeError, CacheSecurityError):
        variants = []
    variants = [v for v in variants if v != files] + [files]
    _write_atomically(manifest, json.dumps({"variants": variants[-_MANIFEST_VARIANTS:]}))


def _build(source: str, flags: Sequence[str], libraries: Sequence[str],
           command: Sequence[str], entries: str, manifest: str,
           direct: str) -> Tuple[str, str]:
    """Compile into a private directory, then rename the entry into place.

    Returns the entry's key and the compiler's diagnostics.
    """
    from . import get_include
    workdir = tempfile.mkdtemp(prefix=".build-", dir=entries)
    try:
        with open(os.path.join(workdir, _SOURCE_NAME), "w", encoding="utf-8") as stream:
            stream.write(source)
        full = [*command, *BASE_FLAGS, f"-I{get_include()}", "-MD", "-MF", _DEPS_NAME,
                *flags, "-o", "out.so", _SOURCE_NAME, *_library_args(libraries)]
        started = time.time_ns()
        try:
            result = subprocess.run(full, cwd=workdir, capture_output=True, encoding="utf-8",
                                    errors="replace")
        except OSError as error:
            raise CompileError(f"pymic: cannot run the C compiler {command[0]!r}: {error}",
                               command=full) from error
        diagnostics = (result.stderr + result.stdout).strip()
        if result.returncode != 0:
            raise CompileError(
                f"pymic: compiling kernel source failed (exit status {result.returncode})\n"
                f"command: {shlex.join(full)}\n{diagnostics}",
                diagnostics=diagnostics, command=full, returncode=result.returncode)
        # The key covers the content of every file the compiler read.  A
        # file changed while it compiled may have been read either way: the
        # entry is used now, but not remembered for later loads.
        files = _read_dependencies(os.path.join(workdir, _DEPS_NAME), workdir) or []
        files = [f for f in files if not f.startswith(workdir + os.sep)]
        digests = _dependency_digests(files) or []
        stable = len(digests) == len(files) and _unchanged_since(files, started)
        key = _entry_key(direct, digests)
        os.chmod(os.path.join(workdir, "out.so"), 0o700)
        metadata = {"key": key, "created": time.time(), "command": full,
                    "source_lines": source.count("\n") + 1, "source_head": source[:400],
                    "dependencies": files, "warnings": diagnostics}
        with open(os.path.join(workdir, "meta.json"), "w", encoding="utf-8") as stream:
            json.dump(metadata, stream)
        with open(os.path.join(workdir, "source.c"), "w", encoding="utf-8") as stream:
            stream.write(source)
        # Metadata first: an entry whose .so exists always has them.
        os.replace(os.path.join(workdir, "meta.json"), os.path.join(entries, key + ".json"))
        os.replace(os.path.join(workdir, "source.c"), os.path.join(entries, key + ".c"))
        os.replace(os.path.join(workdir, "out.so"), os.path.join(entries, key + ".so"))
        if stable:
            _remember(manifest, files)
        return key, diagnostics
    finally:
        shutil.rmtree(workdir, ignore_errors=True)


# ------------------------------------------------------------------ cache

def cache_entries() -> list[dict[str, Any]]:
    """Describe the compiled kernels in the cache.

    Returns
    -------
    list of dict
        One dict per entry: ``key``, ``path``, ``bytes``, ``created``
        (seconds since the epoch), ``command``, ``source_head`` and
        ``source`` (the whole source compiled, ``""`` if its file is gone or
        fails the cache's checks).
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
                "created": os.path.getmtime(path), "command": [], "source_head": "",
                "source": ""}
        try:
            with open(os.path.join(entries, key + ".json"), encoding="utf-8") as stream:
                meta = json.load(stream)
            info.update(created=meta.get("created", info["created"]),
                        command=meta.get("command", []),
                        source_head=meta.get("source_head", ""))
        except (OSError, ValueError):
            pass
        try:
            info["source"] = _read_private(os.path.join(entries, key + ".c"), "source")
        except (OSError, ValueError, CacheSecurityError):
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
    for sub in (_ENTRY_DIR, _COMPILER_DIR, _MANIFEST_DIR):
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
