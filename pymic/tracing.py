"""Timelines of every stream: recording, writing and summarising traces.

``with pymic.trace("trace.json"):`` (or ``PYMIC_TRACE=trace.json`` for a
whole run) records every command the engine runs -- when the host enqueued
it, when it started and ended on the device, the kernel's name, the bytes
moved, its stream and device, and the line of Python that asked for it --
and every host wait (stream, event and device syncs, an enqueue waiting for
room in a full stream).  The file is Chrome trace-event JSON, which the
Perfetto UI (https://ui.perfetto.dev) and ``chrome://tracing`` open
directly:

- one process per device, one thread (track) per stream, a complete slice
  (``"ph": "X"``) per command: on the host, from when the command started
  to when it completed there;
- for a device in a process of its own (an MPI device), a second track per
  stream ("stream N on the device") with the span each command had on the
  device itself (the kernel's run, the copy into or out of its memory),
  its times translated to the host's clock (``args.clock_error_us`` bounds
  the translation's error);
- one process for the host (its real pid), a track per host thread, with a
  slice per wait, a marker where each command was enqueued and the user's
  ``pymic.trace_range`` slices;
- flow arrows from each enqueue to the command's slice, and from each
  ``record_event`` to the waits it released;
- times in microseconds from the start of the trace.

``PYMIC_TRACE=1`` keeps pyMIC's meaning instead: the records, each with the
source location of its call, are printed to stdout at exit.

The engine records into per-stream buffers with no lock and no allocation
per command.  The file is written when the trace ends, one event at a time
(never as one list), into a private temporary file that is renamed over
the target.
"""

from __future__ import annotations

import atexit
import errno
import json
import os
import stat
import sys
import tempfile
import threading
import time
from collections.abc import Iterable, Iterator
from types import TracebackType
from typing import IO, Any, Callable, Optional, Union

from . import _engine
from ._engine import OffloadError

PathLike = Union[str, "os.PathLike[str]"]

#: Process ids of devices in a trace file are this plus the device number:
#: above every process id Linux hands out (PID_MAX_LIMIT), so they never
#: clash with the host's real pid.
DEVICE_PID_BASE = 1 << 22

#: A device whose commands run in a process of its own (an MPI device) has,
#: beside each stream's track of host-side spans, a track of the spans the
#: commands had on the device itself: its thread id is this plus the
#: stream's number.
DEVICE_SIDE_TID_BASE = 1 << 20

#: The category of those device-side slices (not one of DEVICE_CATEGORIES:
#: each command is counted once, by its host-side slice), and what their
#: names add to the command's name (a slice named after a kernel is the
#: command's own slice).
DEVICE_SIDE_CATEGORY = "device_side"
DEVICE_SIDE_SUFFIX = " (device side)"

#: Values of ``stacks`` / ``PYMIC_TRACE_STACKS``.
STACK_MODES = ("none", "compact", "full")

_COMMAND_KINDS = {1: "invoke", 2: "copy", 3: "copy", 4: "copy", 5: "memory", 6: "event",
                  7: "event"}
_RECORD_EVENT, _WAIT_EVENT = 6, 7
_WAIT_KINDS = {1: "stream", 2: "event", 3: "device", 4: "room"}
_WAIT_EVENT_SYNC = 2

#: Categories of device slices (everything else in a pymic trace is a host
#: wait, an enqueue marker, a user range or a flow).
DEVICE_CATEGORIES = frozenset(_COMMAND_KINDS.values())

# A timed wait that gave up and the next one of the same thread and target
# are one wait when the second starts within this many nanoseconds.
_WAIT_MERGE_NS = 1_000_000

# Launchers' variables holding this process's MPI rank, in the order
# looked at (as host:auto does, Slurm's only inside an srun task).
_RANK_VARIABLES = ("OMPI_COMM_WORLD_RANK", "PMI_RANK", "PMIX_RANK", "MV2_COMM_WORLD_RANK")

_PACKAGE_PREFIX = os.path.dirname(os.path.abspath(__file__)) + os.sep


def host_pid() -> int:
    """Return the trace-file process id of the host: this process's pid.

    Returns
    -------
    int
        ``os.getpid()``.
    """
    return os.getpid()


def device_pid(device_id: int) -> int:
    """Return the trace-file process id of a device.

    Parameters
    ----------
    device_id : int
        The device number.

    Returns
    -------
    int
        ``DEVICE_PID_BASE + device_id``.
    """
    return DEVICE_PID_BASE + device_id


def mpi_rank() -> Optional[int]:
    """Return this process's MPI rank as its launcher tells it, or None.

    Open MPI (``OMPI_COMM_WORLD_RANK``), MPICH/Hydra and Intel MPI
    (``PMI_RANK``), PMIx (``PMIX_RANK``), MVAPICH (``MV2_COMM_WORLD_RANK``)
    and Slurm's ``srun`` (``SLURM_PROCID`` in a task that srun started).

    Returns
    -------
    int or None
        The rank, or None outside an MPI launcher (or for a malformed value).
    """
    names = list(_RANK_VARIABLES)
    if os.environ.get("SLURM_STEP_TASKS_PER_NODE"):
        names.append("SLURM_PROCID")
    for name in names:
        value = os.environ.get(name, "").strip()
        if value:
            return int(value) if value.isdigit() else None
    return None


def resolve_path(path: PathLike) -> str:
    """Return the file a trace asked for at ``path`` is written to.

    ``{pid}`` becomes this process's pid and ``{rank}`` its MPI rank (0
    outside a launcher).  Under an MPI launcher a path without ``{rank}``
    gets ``.rank<N>`` before its extension (``trace.json`` becomes
    ``trace.rank3.json``), so ranks never write the same file.

    Parameters
    ----------
    path : str or os.PathLike
        The path as given.

    Returns
    -------
    str
        The absolute path.
    """
    text = os.fspath(path)
    rank = mpi_rank()
    if rank is not None and "{rank}" not in text:
        root, extension = os.path.splitext(text)
        text = f"{root}.rank{{rank}}{extension}"
    text = text.replace("{pid}", str(os.getpid())).replace("{rank}", str(rank or 0))
    return os.path.abspath(text)


# ------------------------------------------------------------ safe writes

def _umask() -> int:
    try:
        with open("/proc/self/status") as status:
            for line in status:
                if line.startswith("Umask:"):
                    return int(line.split()[1], 8)
    except (OSError, ValueError, IndexError):
        pass
    return 0o022


def check_writable(path: str, what: str = "pymic.trace") -> None:
    """Make sure a trace can be written at ``path``, leaving nothing behind.

    Parameters
    ----------
    path : str
        The trace file (absolute).
    what : str
        Who asks, for the message.

    Raises
    ------
    IsADirectoryError
        If ``path`` is a directory.
    FileNotFoundError
        If its directory does not exist.
    NotADirectoryError
        If its "directory" is something else.
    PermissionError
        If no file can be created in its directory.
    """
    directory = os.path.dirname(path) or "."
    if os.path.isdir(path):
        raise IsADirectoryError(errno.EISDIR, f"{what}: cannot write the trace file {path!r}: "
                                f"it is a directory", path)
    if not os.path.exists(directory):
        raise FileNotFoundError(errno.ENOENT, f"{what}: cannot write the trace file {path!r}: "
                                f"the directory {directory!r} does not exist", path)
    if not os.path.isdir(directory):
        raise NotADirectoryError(errno.ENOTDIR, f"{what}: cannot write the trace file "
                                 f"{path!r}: {directory!r} is not a directory", path)
    try:
        fd, probe = tempfile.mkstemp(prefix="." + os.path.basename(path) + ".", suffix=".tmp",
                                     dir=directory)
    except OSError as error:
        raise type(error)(error.errno, f"{what}: cannot write the trace file {path!r}: "
                          f"cannot create a file in {directory!r} ({error.strerror})",
                          path) from error
    os.close(fd)
    os.unlink(probe)


def write_atomically(path: str, write: Callable[[IO[str]], None]) -> None:
    """Write a file through a private temporary file renamed over it.

    The temporary file is made by ``mkstemp`` in the target's directory
    (``O_EXCL``, mode 0600): a symbolic link planted in that directory can
    never redirect the write, and the target is replaced, never written
    through.  The file gets the mode of the file it replaces, or the
    default of new files (0666 less the umask).  On any failure the
    temporary file is removed and the target left as it was.

    Parameters
    ----------
    path : str
        The target.
    write : callable
        Called with the open text file.
    """
    directory = os.path.dirname(path) or "."
    fd, temporary = tempfile.mkstemp(prefix="." + os.path.basename(path) + ".", suffix=".tmp",
                                     dir=directory)
    try:
        try:
            existing = os.lstat(path)
        except FileNotFoundError:
            existing = None
        if existing is not None and stat.S_ISREG(existing.st_mode):
            mode = stat.S_IMODE(existing.st_mode)
        else:
            mode = 0o666 & ~_umask()
        os.fchmod(fd, mode)
        with os.fdopen(fd, "w", encoding="utf-8", buffering=1 << 20) as stream:
            fd = -1
            write(stream)
        os.replace(temporary, path)
    except BaseException:
        if fd >= 0:
            os.close(fd)
        try:
            os.unlink(temporary)
        except OSError:
            pass
        raise


# -------------------------------------------------------------- recording

_active: Optional["Trace"] = None


class Trace:
    """A recording of every command and host wait, as a context manager.

    Use :func:`pymic.trace` to make one.  On leaving the ``with`` block the
    recording stops and, if a path was given, the file is written.
    Commands still queued or running then appear with their enqueue time
    only (sync the streams inside the block to see them complete).

    Parameters
    ----------
    path : str or os.PathLike or None
        File to write the Chrome/Perfetto JSON to (``{pid}`` and ``{rank}``
        are substituted, see :func:`resolve_path`); None keeps the events
        in memory only (:attr:`events`).
    commands_per_stream : int
        Room for this many commands per stream (0: the engine's default,
        262144); later ones are counted as dropped.
    stacks : str
        Call sites kept with each command and wait: ``"compact"`` (the
        file and line of the call, the default), ``"full"`` (the whole
        Python stack) or ``"none"``.

    Attributes
    ----------
    path : str or None
        Where the trace is written (after substitution, once started).
    dropped : int
        Records lost to full buffers.
    """

    def __init__(self, path: Optional[PathLike] = None, commands_per_stream: int = 0,
                 stacks: str = "compact") -> None:
        if isinstance(commands_per_stream, bool) or not isinstance(commands_per_stream, int):
            raise TypeError("commands_per_stream must be an int")
        if commands_per_stream < 0:
            raise ValueError("commands_per_stream must be >= 0")
        if stacks not in STACK_MODES:
            raise ValueError(f"stacks must be one of {', '.join(STACK_MODES)}, not {stacks!r}")
        self._requested = os.fspath(path) if path is not None else None
        self.path: Optional[str] = self._requested
        self.stacks = stacks
        self._capacity = commands_per_stream
        self.dropped = 0
        self._origin_ns = 0
        self._origin_unix_ns = 0
        self._recording = False
        self._records: Any = None
        self._ranges: list[tuple[str, int, int, int, str]] = []
        self._events: Optional[list[dict[str, Any]]] = None
        self._context: Optional[dict[str, Any]] = None

    def start(self) -> "Trace":
        """Start recording.

        Returns
        -------
        Trace
            self.

        Raises
        ------
        OffloadError
            If another trace is being recorded (only one at a time).
        OSError
            If the file cannot be written: its directory is missing or not
            writable, or the path is a directory (nothing is recorded).
        """
        global _active
        if _engine.trace_active():
            raise OffloadError("pymic.trace: a trace is already being recorded "
                               "(another pymic.trace block, or PYMIC_TRACE)")
        if self._requested is not None:
            self.path = resolve_path(self._requested)
            check_writable(self.path)
        self._ranges = []
        self._events = None
        self._records = None
        _engine.trace_set_sites(self.stacks, _PACKAGE_PREFIX)
        self._origin_ns = time.monotonic_ns()
        self._origin_unix_ns = time.time_ns()
        try:
            _engine.trace_start(self._capacity)
        except BaseException:
            _engine.trace_set_sites("none", _PACKAGE_PREFIX)
            raise
        self._recording = True
        _active = self
        return self

    def stop(self) -> None:
        """Stop recording and write the file if a path was given.

        Raises
        ------
        OSError
            If the file cannot be written (it is then left as it was).
        """
        global _active
        if not self._recording:
            return
        self._recording = False
        if _active is self:
            _active = None
        _engine.trace_stop()
        _engine.trace_set_sites("none", _PACKAGE_PREFIX)
        self._records = _engine.trace_records()
        self.dropped = self._records.counts()[2]
        self._context = _context()
        if self.path is not None:
            write_atomically(self.path, lambda stream: write_document(
                stream, self.iter_events(), self.dropped, self._other_data()))

    @property
    def events(self) -> list[dict[str, Any]]:
        """The trace events (list of dict), built on first use after the stop.

        Metadata events come first, then the device slices stream by
        stream, the host's waits and the user ranges, each with its flows.
        """
        if self._events is None:
            self._events = list(self.iter_events())
        return self._events

    def iter_events(self) -> Iterator[dict[str, Any]]:
        """Yield the trace events one by one, as :attr:`events` holds them.

        Returns
        -------
        iterator of dict
        """
        if self._records is None:
            return iter(())
        return _events(self._records, self._ranges, self._origin_ns, self._context or {})

    def _other_data(self) -> dict[str, Any]:
        data: dict[str, Any] = {
            "producer": "pymic %d.%d.%d" % _engine.version(),
            "dropped_records": self.dropped,
            "pid": os.getpid(),
            "clock_origin_unix_us": self._origin_unix_ns // 1000,
            "stacks": self.stacks,
        }
        rank = mpi_rank()
        if rank is not None:
            data["rank"] = rank
        return data

    def print_records(self, stream: Optional[IO[str]] = None) -> None:
        """Print the records as text, each with its call site (pyMIC's form).

        Parameters
        ----------
        stream : file or None
            Where to print (default ``sys.stdout``).
        """
        out = stream if stream is not None else sys.stdout
        if self._records is None:
            return
        for line in _text_records(self._records, self._ranges, self._origin_ns,
                                  self._context or {}, self.stacks):
            out.write(line + "\n")
        out.flush()

    def __enter__(self) -> "Trace":
        return self.start()

    def __exit__(self, exc_type: Optional[type[BaseException]],
                 exc: Optional[BaseException], traceback: Optional[TracebackType]) -> None:
        self.stop()


def trace(path: Optional[PathLike] = None, commands_per_stream: int = 0,
          stacks: str = "compact") -> Trace:
    """Record a timeline of every stream while a ``with`` block runs.

    Example::

        with pymic.trace("trace.json"):
            stream.invoke(library.kernel, a)
            stream.sync()

    then open ``trace.json`` in https://ui.perfetto.dev, or run
    ``python -m pymic trace-summary trace.json``.  Setting
    ``PYMIC_TRACE=trace.json`` records a whole run the same way.

    Parameters
    ----------
    path : str or os.PathLike or None
        File to write; None keeps the events in memory (``.events``).
        ``{pid}`` and ``{rank}`` are substituted; under an MPI launcher a
        path without ``{rank}`` gets ``.rank<N>`` before its extension.
    commands_per_stream : int
        Room for this many commands per stream (0: default, 262144).
    stacks : str
        ``"compact"`` (default): each command and wait keeps the file and
        line that asked for it; ``"full"``: the whole Python stack;
        ``"none"``: no call sites.

    Returns
    -------
    Trace
        A context manager; also usable with ``start()`` / ``stop()``.

    Raises
    ------
    OffloadError
        On entering, if another trace is being recorded.
    OSError
        On entering, if the file could not be written (missing or
        unwritable directory, or a directory as the path).
    """
    return Trace(path, commands_per_stream, stacks)


class TraceRange:
    """A named slice on the host thread's track (see :func:`trace_range`)."""

    __slots__ = ("name", "_trace", "_start_ns", "_site")

    def __init__(self, name: str) -> None:
        if not isinstance(name, str):
            raise TypeError(f"trace_range needs a str name, not {type(name).__name__}")
        self.name = name
        self._trace: Optional[Trace] = None
        self._start_ns = 0
        self._site = ""

    def __enter__(self) -> "TraceRange":
        recording = _active
        if recording is not None and recording._recording:
            self._trace = recording
            if recording.stacks != "none":
                caller = sys._getframe(1)
                self._site = f"{caller.f_code.co_filename}:{caller.f_lineno}"
            self._start_ns = time.monotonic_ns()
        return self

    def __exit__(self, exc_type: Optional[type[BaseException]],
                 exc: Optional[BaseException], traceback: Optional[TracebackType]) -> None:
        recording, self._trace = self._trace, None
        if recording is not None and recording._recording:
            recording._ranges.append((self.name, self._start_ns, time.monotonic_ns(),
                                      threading.get_native_id(), self._site))


def trace_range(name: str) -> TraceRange:
    """Mark a stretch of host code as a named slice in the trace, like NVTX.

    Example::

        for step in range(100):
            with pymic.trace_range(f"step {step}"):
                stream.invoke(library.kernel, a)
                stream.sync()

    While a trace records, the range is a slice (category ``range``) on the
    track of the thread that ran it, from entering the block to leaving it;
    ranges nest.  While no trace records it costs a check and does
    nothing; a range entered before the trace started or left after it
    stopped is not recorded.

    Parameters
    ----------
    name : str
        The slice's name.

    Returns
    -------
    TraceRange
        A context manager.
    """
    return TraceRange(name)


# --------------------------------------------------------------- events

def _us(ns: int, origin_ns: int) -> float:
    return round((ns - origin_ns) / 1000.0, 3)


def _context() -> dict[str, Any]:
    """What names tracks and sites, taken when the recording stops."""
    stream_names = {}
    from .device import OffloadDevice
    for device in list(OffloadDevice._instances.values()):
        stream = device._default_stream
        if stream is not None:
            number = _engine.trace_stream_number(stream)
            if number:
                stream_names[number] = f"default stream ({number})"
    labels = {}
    for device_id in range(_engine.device_count()):
        info = _engine.device_info(device_id)
        labels[device_id] = f"device {device_id} ({info['kind']} {info['name']})"
    return {"streams": stream_names, "devices": labels,
            "threads": {t.native_id: t.name for t in threading.enumerate()
                        if t.native_id is not None},
            "sites": _engine.trace_sites(), "pid": os.getpid()}


class _Sites:
    """Call-site numbers to what the trace shows of them."""

    def __init__(self, table: list[tuple[tuple[str, int, str], ...]]) -> None:
        self._table = table
        self._args: dict[int, dict[str, Any]] = {}

    def frames(self, number: int) -> tuple[tuple[str, int, str], ...]:
        if 0 < number <= len(self._table):
            return self._table[number - 1]
        return ()

    def args(self, number: int) -> dict[str, Any]:
        """``{"site": "file:line"}``, and ``"stack"`` for a full stack."""
        cached = self._args.get(number)
        if cached is None:
            frames = self.frames(number)
            cached = {}
            if frames:
                filename, line, _ = frames[-1]
                cached["site"] = f"{filename}:{line}"
                if len(frames) > 1:
                    cached["stack"] = [f"{f}:{n} in {name}" for f, n, name in frames]
            self._args[number] = cached
        return cached


def _merged_waits(records: Any) -> Iterator[tuple[Any, ...]]:
    """The host waits by start time, the timed pieces of one wait joined.

    A piece that timed out stays open until a piece of the same thread and
    target starts within _WAIT_MERGE_NS of its end; only open pieces are
    held, so this streams.
    """
    pending: dict[tuple[Any, ...], list[Any]] = {}
    nwaits = records.counts()[1]
    for i in range(nwaits):
        wait = records.wait(i)
        kind, device, stream, target, start, end, thread, timed_out, site = wait
        key = (thread, kind, device, stream, target)
        previous = pending.get(key)
        if previous is not None and start - previous[5] <= _WAIT_MERGE_NS:
            previous[5], previous[7] = end, timed_out
            if not timed_out:
                del pending[key]
                yield tuple(previous)
            continue
        if previous is not None:
            del pending[key]
            yield tuple(previous)
        if timed_out:
            pending[key] = list(wait)
        else:
            yield wait
    yield from (tuple(wait) for wait in pending.values())


def _wait_name(kind: int, device: int, stream: int) -> str:
    if kind == 1:
        return f"sync stream {stream}"
    if kind == 2:
        return "sync event"
    if kind == 3:
        return f"sync device {device}"
    return f"wait for room in stream {stream}"


def _events(records: Any, ranges: list[tuple[str, int, int, int, str]], origin_ns: int,
            context: dict[str, Any]) -> Iterator[dict[str, Any]]:
    """Yield the Chrome trace events of a recording, one at a time.

    A first pass over the records (keeping only track names and the flow
    numbers of event records) writes the metadata; the second yields the
    slices, markers and flows.
    """
    ncommands = records.counts()[0]
    pid_host = context.get("pid", os.getpid())
    sites = _Sites(context.get("sites", []))
    tracks: dict[tuple[int, int], str] = {}
    devices: set[int] = set()
    threads: set[int] = set()
    # Flows from an event's record to each wait it released: the record's
    # number -> the flow ids, in the order the waiters come below.
    releases: dict[int, list[int]] = {}
    next_flow = 1

    def note_waiter(number: int) -> None:
        nonlocal next_flow
        if number:
            releases.setdefault(number, []).append(next_flow)
            next_flow += 1

    recorded: set[int] = set()  # numbers of the event records that ran
    for i in range(ncommands):
        device, stream, _, _, kind, _, _, start, _, thread, _, number = records.command(i)
        devices.add(device)
        threads.add(thread)
        name = context.get("streams", {}).get(stream, f"stream {stream}")
        tracks[(device_pid(device), stream)] = name
        if records.device_span(i) is not None:
            tracks[(device_pid(device), DEVICE_SIDE_TID_BASE + stream)] = name + " on the device"
        if kind == _RECORD_EVENT and start and number:
            recorded.add(number)
    for i in range(ncommands):
        _, _, _, _, kind, _, _, start, _, _, _, number = records.command(i)
        if kind == _WAIT_EVENT and start and number in recorded:
            note_waiter(number)
    for wait in _merged_waits(records):
        threads.add(wait[6])
        if wait[0] == _WAIT_EVENT_SYNC and wait[3] in recorded:
            note_waiter(wait[3])
    threads.update(r[3] for r in ranges)

    yield {"name": "process_name", "ph": "M", "pid": pid_host, "tid": 0,
           "args": {"name": f"host (pid {pid_host})"}}
    yield {"name": "process_sort_index", "ph": "M", "pid": pid_host, "tid": 0,
           "args": {"sort_index": 0}}
    labels = context.get("devices", {})
    for device in sorted(devices):
        pid = device_pid(device)
        yield {"name": "process_name", "ph": "M", "pid": pid, "tid": 0,
               "args": {"name": labels.get(device, f"device {device}")}}
        yield {"name": "process_sort_index", "ph": "M", "pid": pid, "tid": 0,
               "args": {"sort_index": 1 + device}}
    names = context.get("threads", {})
    for thread in sorted(threads):
        yield {"name": "thread_name", "ph": "M", "pid": pid_host, "tid": thread,
               "args": {"name": f"{names.get(thread, 'thread')} ({thread})"}}
    for (pid, tid), name in sorted(tracks.items()):
        yield {"name": "thread_name", "ph": "M", "pid": pid, "tid": tid, "args": {"name": name}}
        # A stream's device-side track right below its own.
        order = (2 * (tid - DEVICE_SIDE_TID_BASE) + 1 if tid >= DEVICE_SIDE_TID_BASE
                 else 2 * tid)
        yield {"name": "thread_sort_index", "ph": "M", "pid": pid, "tid": tid,
               "args": {"sort_index": order}}

    released: dict[int, int] = {}  # record number -> waiters already given their flow

    def release_flow(number: int) -> Optional[int]:
        flows = releases.get(number)
        if not flows:
            return None
        index = released.get(number, 0)
        released[number] = index + 1
        return flows[index] if index < len(flows) else None

    for i in range(ncommands):
        (device, stream, seq, name, kind, nbytes, enq, start, end, thread, site,
         number) = records.command(i)
        pid = device_pid(device)
        category = _COMMAND_KINDS.get(kind, "other")
        enqueued = _us(enq, origin_ns)
        args: dict[str, Any] = {"seq": seq, "stream": stream, "device": device,
                                "enqueued_us": enqueued}
        if nbytes:
            args["bytes"] = nbytes
        args.update(sites.args(site))
        marker_args: dict[str, Any] = {"stream": stream, "device": device, "seq": seq}
        marker_args.update(sites.args(site))
        # The enqueue marker is a slice of no length, so that the flow
        # leaving it binds to it.
        yield {"name": "enqueue " + name, "cat": "enqueue", "ph": "X", "pid": pid_host,
               "tid": thread, "ts": enqueued, "dur": 0, "args": marker_args}
        if not start:
            args["unfinished"] = True
            yield {"name": name + " (not run when the trace ended)", "cat": category,
                   "ph": "i", "s": "t", "pid": pid, "tid": stream, "ts": enqueued, "args": args}
            continue
        begin = _us(start, origin_ns)
        args["queued_us"] = round((start - enq) / 1000.0, 3)
        yield {"name": name, "cat": category, "ph": "X", "pid": pid, "tid": stream,
               "ts": begin, "dur": round((end - start) / 1000.0, 3), "args": args}
        span = records.device_span(i)
        if span is not None:
            device_start, device_end, error = span
            yield {"name": name + DEVICE_SIDE_SUFFIX, "cat": DEVICE_SIDE_CATEGORY, "ph": "X",
                   "pid": pid,
                   "tid": DEVICE_SIDE_TID_BASE + stream, "ts": _us(device_start, origin_ns),
                   "dur": round((device_end - device_start) / 1000.0, 3),
                   "args": {"seq": seq, "stream": stream, "device": device,
                            "kind": category, "clock_error_us": round(error / 1000.0, 3)}}
        flow = next_flow
        next_flow += 1
        yield {"name": "enqueue", "cat": "flow", "ph": "s", "id": flow, "pid": pid_host,
               "tid": thread, "ts": enqueued}
        yield {"name": "enqueue", "cat": "flow", "ph": "f", "bp": "e", "id": flow,
               "pid": pid, "tid": stream, "ts": begin}
        if kind == _RECORD_EVENT:
            for flow in releases.get(number, ()):
                yield {"name": "event", "cat": "flow", "ph": "s", "id": flow, "pid": pid,
                       "tid": stream, "ts": begin}
        elif kind == _WAIT_EVENT:
            flow_id = release_flow(number)
            if flow_id is not None:
                yield {"name": "event", "cat": "flow", "ph": "f", "bp": "e", "id": flow_id,
                       "pid": pid, "tid": stream, "ts": begin}

    for (kind, device, stream, target, start, end, thread, timed_out,
         site) in _merged_waits(records):
        args = {"kind": _WAIT_KINDS.get(kind, "wait"), "target": target}
        if device >= 0:
            args["device"] = device
        if stream >= 0:
            args["stream"] = stream
        if timed_out:
            args["timed_out"] = True
        args.update(sites.args(site))
        begin = _us(start, origin_ns)
        yield {"name": _wait_name(kind, device, stream), "cat": "wait", "ph": "X",
               "pid": pid_host, "tid": thread, "ts": begin,
               "dur": round((end - start) / 1000.0, 3), "args": args}
        if kind == _WAIT_EVENT_SYNC:
            flow_id = release_flow(target)
            if flow_id is not None:
                yield {"name": "event", "cat": "flow", "ph": "f", "bp": "e", "id": flow_id,
                       "pid": pid_host, "tid": thread, "ts": begin}

    for name, start, end, thread, where in ranges:
        event: dict[str, Any] = {"name": name, "cat": "range", "ph": "X", "pid": pid_host,
                                 "tid": thread, "ts": _us(start, origin_ns),
                                 "dur": round((end - start) / 1000.0, 3)}
        if where:
            event["args"] = {"site": where}
        yield event


def write_document(stream: IO[str], events: Iterable[dict[str, Any]], dropped: int = 0,
                   other_data: Optional[dict[str, Any]] = None) -> None:
    """Write trace events to an open file as Chrome/Perfetto JSON, one by one.

    Parameters
    ----------
    stream : file
        Open for writing text.
    events : iterable of dict
        The events; consumed as they are written.
    dropped : int
        Records lost to full buffers, kept in ``otherData``.
    other_data : dict or None
        More of ``otherData``.
    """
    data = {"producer": "pymic %d.%d.%d" % _engine.version(), "dropped_records": dropped}
    data.update(other_data or {})
    stream.write('{"displayTimeUnit":"ms","otherData":')
    stream.write(json.dumps(data, separators=(",", ":")))
    stream.write(',"traceEvents":[')
    encode = json.JSONEncoder(separators=(",", ":")).encode
    first = True
    for event in events:
        if not first:
            stream.write(",\n")
        stream.write(encode(event))
        first = False
    stream.write("]}\n")


def write_trace(path: PathLike, events: Iterable[dict[str, Any]], dropped: int = 0) -> None:
    """Write trace events as a Chrome/Perfetto JSON file.

    Parameters
    ----------
    path : str or os.PathLike
        The file to write (replaced atomically through a private temporary
        file, see :func:`write_atomically`).
    events : iterable of dict
        Trace events, e.g. :attr:`Trace.events`.
    dropped : int
        Records lost to full buffers, kept in ``otherData``.
    """
    write_atomically(os.path.abspath(os.fspath(path)),
                     lambda stream: write_document(stream, events, dropped))


# ------------------------------------------------------------ text form

def _text_records(records: Any, ranges: list[tuple[str, int, int, int, str]], origin_ns: int,
                  context: dict[str, Any], stacks: str) -> Iterator[str]:
    """pyMIC's PYMIC_TRACE=1 form: one line per record, by start time."""
    sites = _Sites(context.get("sites", []))
    thread_names = context.get("threads", {})
    ncommands, _, dropped = records.counts()
    # (time, end, what, thread, site: a site number, or a range's text)
    rows: list[tuple[int, int, str, int, int | str]] = []
    for i in range(ncommands):
        (device, stream, _, name, kind, nbytes, enq, start, end, thread, site,
         _) = records.command(i)
        what = f"{name} on device {device} stream {stream}"
        if nbytes:
            what += f", {nbytes} bytes"
        if not start:
            what += " (not run when the trace ended)"
        rows.append((start or enq, end if start else 0, what, thread, site))
        span = records.device_span(i)
        if span is not None:
            rows.append((span[0], span[1], f"{name}: its span in device {device}'s process, "
                         f"stream {stream} (clock error <= {span[2] / 1000.0:.3f})",
                         thread, site))
    for (kind, device, stream, _, start, end, thread, timed_out,
         site) in _merged_waits(records):
        rows.append((start, end, "host: " + _wait_name(kind, device, stream), thread, site))
    range_rows: list[tuple[int, int, str, int, int | str]] = []
    for name, start, end, thread, where in ranges:
        range_rows.append((start, end, f"range {name!r}", thread, where))
    yield (f"pymic trace of pid {context.get('pid', os.getpid())}: {ncommands} commands, "
           f"{len(rows) - ncommands} host waits, {len(ranges)} ranges"
           + (f", {dropped} records dropped" if dropped else "")
           + " (times in microseconds from the start of the trace)")
    header = f"{'start':>12} {'duration':>11}  {'thread':<16}  record"
    yield header + ("" if stacks == "none" else "  @ call site")
    for when, end, what, thread, site in sorted(rows + range_rows, key=lambda r: r[0]):
        duration = f"{(end - when) / 1000.0:11.3f}" if end else f"{'-':>11}"
        line = (f"{(when - origin_ns) / 1000.0:12.3f} {duration}  "
                f"{thread_names.get(thread, str(thread)):<16}  {what}")
        if stacks == "none":
            yield line
            continue
        if isinstance(site, str):  # a range: its site is already text
            yield line + (f"  @ {site}" if site else "")
            continue
        frames = sites.frames(site)
        if not frames:
            yield line
            continue
        yield line + f"  @ {frames[-1][0]}:{frames[-1][1]}"
        if stacks == "full":
            for filename, number, function in frames:
                yield f"{'':26}File \"{filename}\", line {number}, in {function}"


# ------------------------------------------------------------ PYMIC_TRACE

_environment_trace: Optional[Trace] = None
_environment_pid: Optional[int] = None
_environment_text = False


def _finish_environment_trace() -> None:
    # A fork()ed child that exits through atexit must not overwrite the
    # parent's file with the records it inherited.
    if _environment_trace is None or os.getpid() != _environment_pid:
        return
    try:
        _environment_trace.stop()
        if _environment_text:
            _environment_trace.print_records()
    except (OSError, OffloadError) as error:  # at exit: report, do not raise
        where = _environment_trace.path or "stdout"
        print(f"PYMIC: could not write the trace ({where}): {error}", file=sys.stderr)


def start_from_environment() -> Optional[Trace]:
    """Start the whole-run trace PYMIC_TRACE asks for (called at import).

    ``PYMIC_TRACE=1`` prints the records with their call sites to stdout at
    exit (pyMIC's meaning); any other value but ``0`` is the path of a JSON
    timeline written at exit.  ``PYMIC_TRACE_STACKS`` (``none``,
    ``compact``, ``full``) chooses the call sites.  Either is written after
    pymic has drained every device.

    Returns
    -------
    Trace or None
        The running trace, or None when PYMIC_TRACE is unset, empty or 0.

    Raises
    ------
    OffloadError
        If ``PYMIC_TRACE_STACKS`` is not a known value, or the file cannot
        be written (missing or unwritable directory, a directory as path).
    """
    global _environment_trace, _environment_pid, _environment_text
    value = os.environ.get("PYMIC_TRACE", "").strip()
    if value in ("", "0") or _environment_trace is not None:
        return _environment_trace
    stacks = os.environ.get("PYMIC_TRACE_STACKS", "").strip().lower() or "compact"
    if stacks not in STACK_MODES:
        raise OffloadError(f"PYMIC_TRACE_STACKS={os.environ['PYMIC_TRACE_STACKS']!r}: "
                           f"expected one of {', '.join(STACK_MODES)}")
    text = value == "1"
    recording = Trace(None if text else value, stacks=stacks)
    try:
        recording.start()
    except OSError as error:
        raise OffloadError(f"PYMIC_TRACE={value!r}: {error.strerror}") from error
    _environment_pid = os.getpid()
    _environment_trace, _environment_text = recording, text
    atexit.register(_finish_environment_trace)
    return recording


# ---------------------------------------------------------------- reading

class TraceFormatError(ValueError):
    """A file that is not a trace pymic can read (bad JSON or bad events)."""


def _check_event(event: Any, index: int) -> None:
    """Raise TraceFormatError unless `event` has what summaries read."""
    def fail(reason: str) -> None:
        raise TraceFormatError(f"event {index} {reason}")

    if not isinstance(event, dict):
        fail(f"is not an object: {json.dumps(event)[:40]}")
    phase = event.get("ph")
    if not isinstance(phase, str):
        fail("has no phase (\"ph\")")
    if phase not in ("X", "M"):
        return
    for field, kinds in (("name", (str,)), ("pid", (int,)), ("tid", (int,))):
        if field == "tid" and phase == "M" and field not in event:
            continue
        value = event.get(field)
        if not isinstance(value, kinds) or isinstance(value, bool):
            fail(f"({phase}) has no valid {field!r}")
    args = event.get("args", {})
    if not isinstance(args, dict):
        fail("has \"args\" that are not an object")
    if phase == "M":
        if event["name"] in ("process_name", "thread_name") and not isinstance(
                args.get("name"), str):
            fail(f"({event['name']}) has no name in its args")
        return
    for field in ("ts", "dur"):
        value = event.get(field)
        if not isinstance(value, (int, float)) or isinstance(value, bool) or value != value:
            fail(f"(a slice) has no valid {field!r}")
    if "cat" in event and not isinstance(event["cat"], str):
        fail("has a category that is not a string")
    if "bytes" in args and (not isinstance(args["bytes"], int) or isinstance(args["bytes"],
                                                                              bool)):
        fail("has a byte count that is not an integer")


def load_events(path: PathLike) -> list[dict[str, Any]]:
    """Read the events of a trace file (object or bare-array form).

    Parameters
    ----------
    path : str or os.PathLike

    Returns
    -------
    list of dict

    Raises
    ------
    OSError
        If the file cannot be read.
    TraceFormatError
        (a ValueError) If it is not JSON, or not a list of trace events nor
        an object with one in ``traceEvents``, or an event lacks a field
        the summary needs.
    """
    try:
        with open(path, encoding="utf-8") as stream:
            document = json.load(stream)
    except UnicodeDecodeError as error:
        raise TraceFormatError(f"not a text file ({error.reason})") from None
    except json.JSONDecodeError as error:
        raise TraceFormatError(f"not JSON: {error}") from None
    except RecursionError:
        raise TraceFormatError("not a trace: JSON nested too deeply") from None
    if isinstance(document, dict):
        if "traceEvents" not in document:
            raise TraceFormatError("a JSON object without \"traceEvents\"")
        events = document["traceEvents"]
    else:
        events = document
    if not isinstance(events, list):
        raise TraceFormatError(f"the trace events are a {type(events).__name__}, not a list")
    for index, event in enumerate(events):
        _check_event(event, index)
    return events


def _load_document(path: PathLike) -> dict[str, Any]:
    """A trace file as an object with ``traceEvents`` (validated)."""
    events = load_events(path)
    with open(path, encoding="utf-8") as stream:
        document = json.load(stream)
    other = document.get("otherData", {}) if isinstance(document, dict) else {}
    return {"traceEvents": events, "otherData": other if isinstance(other, dict) else {}}


def _int_field(data: dict[str, Any], name: str) -> Optional[int]:
    value = data.get(name)
    return value if isinstance(value, int) and not isinstance(value, bool) else None


def merge_traces(paths: list[PathLike], output: PathLike) -> int:
    """Merge trace files (one per MPI rank) into one timeline, a process per rank.

    Each file becomes one process, named ``rank R (pid P)``: R is the rank
    the file records (``otherData.rank``, written under an MPI launcher),
    else its position in ``paths``; P its host's pid.  The host's threads
    keep their tracks and each device stream becomes a track
    ``device D (...) / stream S`` of that process.  Times are aligned on
    the wall clock at which each trace started (``otherData``), flows keep
    their arrows (ids made unique per file).

    Parameters
    ----------
    paths : list of str or os.PathLike
        The files, at least one.
    output : str or os.PathLike
        The merged file (written atomically, see :func:`write_atomically`).

    Returns
    -------
    int
        The number of events written.

    Raises
    ------
    OSError
        If a file cannot be read or the output written.
    TraceFormatError
        If a file is not a trace (the message names it).
    """
    if not paths:
        raise ValueError("trace-merge needs at least one file")
    read_ranks: list[Optional[int]] = []
    read_pids: list[Optional[int]] = []
    read_origins: list[Optional[int]] = []
    dropped = 0
    for path in paths:  # first pass: only what each file says of itself
        try:
            other = _load_document(path)["otherData"]
        except TraceFormatError as error:
            raise TraceFormatError(f"{os.fspath(path)}: {error}") from None
        read_ranks.append(_int_field(other, "rank"))
        read_pids.append(_int_field(other, "pid"))
        read_origins.append(_int_field(other, "clock_origin_unix_us"))
        dropped += _int_field(other, "dropped_records") or 0
    ranks = [rank for rank in read_ranks if rank is not None]
    if len(ranks) != len(paths) or len(set(ranks)) != len(ranks):
        ranks = list(range(len(paths)))
    pids = [pid for pid in read_pids if pid is not None]
    if len(pids) != len(paths) or len(set(pids)) != len(pids):
        pids = [DEVICE_PID_BASE + 1000 + rank for rank in ranks]
    origins = [origin for origin in read_origins if origin is not None]
    base = min(origins) if len(origins) == len(paths) else None
    count = 0

    def rank_events(index: int) -> Iterator[dict[str, Any]]:
        nonlocal count
        events = _load_document(paths[index])["traceEvents"]
        rank, pid = ranks[index], pids[index]
        shift = (origins[index] - base) if base is not None else 0
        process_names = {e["pid"]: e["args"]["name"] for e in events
                         if e.get("ph") == "M" and e.get("name") == "process_name"}
        host = read_pids[index]
        if host is None or host not in process_names:
            hosts = [p for p, name in process_names.items() if name.startswith("host")]
            host = hosts[0] if hosts else None
        tids: dict[tuple[int, int], int] = {}

        def track(event_pid: int, event_tid: int) -> int:
            if event_pid == host:
                return event_tid
            key = (event_pid, event_tid)
            if key not in tids:
                tids[key] = DEVICE_PID_BASE + len(tids) + 1
            return tids[key]

        yield {"name": "process_name", "ph": "M", "pid": pid, "tid": 0,
               "args": {"name": f"rank {rank} (pid {read_pids[index] or '?'})"}}
        yield {"name": "process_sort_index", "ph": "M", "pid": pid, "tid": 0,
               "args": {"sort_index": rank}}
        for event in events:
            phase, event_pid = event.get("ph"), event.get("pid")
            if phase == "M" and event.get("name") in ("process_name", "process_sort_index",
                                                      "process_labels"):
                continue
            merged = dict(event)
            merged["pid"] = pid
            if isinstance(event_pid, int) and isinstance(event.get("tid"), int):
                merged["tid"] = track(event_pid, event["tid"])
                if phase == "M" and event.get("name") == "thread_name" and event_pid != host:
                    merged["args"] = {"name": f"{process_names.get(event_pid, event_pid)} / "
                                              f"{event['args']['name']}"}
                elif phase == "M" and event.get("name") == "thread_sort_index":
                    merged["args"] = {"sort_index": merged["tid"]}
            if isinstance(merged.get("ts"), (int, float)):
                merged["ts"] = round(merged["ts"] + shift, 3)
            if "id" in merged and phase in ("s", "t", "f"):
                merged["id"] = (f"{rank}:{merged['id']}" if not isinstance(merged["id"], int)
                                else ((index + 1) << 32) + merged["id"])
            count += 1
            yield merged

    def all_events() -> Iterator[dict[str, Any]]:
        for index in range(len(paths)):
            yield from rank_events(index)

    other_data = {"merged_from": [os.fspath(p) for p in paths], "ranks": ranks}
    write_atomically(os.path.abspath(os.fspath(output)), lambda stream: write_document(
        stream, all_events(), dropped, other_data))
    return count


def _percentile(sorted_values: list[float], fraction: float) -> float:
    """Nearest-rank percentile of an ascending list."""
    if not sorted_values:
        return 0.0
    rank = max(1, -(-len(sorted_values) * fraction // 1))  # ceil
    return sorted_values[int(rank) - 1]


def summarize(events: Iterable[dict[str, Any]]) -> dict[str, Any]:
    """Per-kernel times, host waits and idle gaps of a trace.

    Parameters
    ----------
    events : iterable of dict
        Trace events (from :func:`load_events` or :attr:`Trace.events`).

    Returns
    -------
    dict
        ``kernels``: {name: {count, total_us, mean_us, p95_us, bytes}} for
        every device slice name; ``waits``: {wait name: {count, total_us}};
        ``wait_total_us``; ``streams``: {track name: {busy_us, span_us,
        idle_us, gaps, largest_gap_us}}.
    """
    events = list(events)
    names = {}
    for event in events:
        if event.get("ph") == "M" and event.get("name") in ("thread_name", "process_name"):
            key = (event["pid"], event.get("tid", 0) if event["name"] == "thread_name" else None)
            names[key] = event["args"]["name"]
    kernels: dict[str, dict[str, Any]] = {}
    waits: dict[str, dict[str, Any]] = {}
    tracks: dict[tuple[int, int], list[tuple[float, float]]] = {}
    for event in events:
        if event.get("ph") != "X":
            continue
        if event.get("cat") in DEVICE_CATEGORIES:
            entry = kernels.setdefault(event["name"], {"durations": [], "bytes": 0})
            entry["durations"].append(event["dur"])
            entry["bytes"] += event.get("args", {}).get("bytes", 0)
            tracks.setdefault((event["pid"], event["tid"]), []).append(
                (event["ts"], event["ts"] + event["dur"]))
        elif event.get("cat") == "wait":
            entry = waits.setdefault(event["name"], {"count": 0, "total_us": 0.0})
            entry["count"] += 1
            entry["total_us"] += event["dur"]
    kernel_table: dict[str, dict[str, Any]] = {}
    for name, entry in kernels.items():
        durations = sorted(entry["durations"])
        total = sum(durations)
        kernel_table[name] = {"count": len(durations), "total_us": total,
                              "mean_us": total / len(durations),
                              "p95_us": _percentile(durations, 0.95), "bytes": entry["bytes"]}
    stream_table: dict[str, dict[str, Any]] = {}
    for (pid, tid), slices in tracks.items():
        slices.sort()
        busy, gaps, largest = 0.0, 0, 0.0
        cover_end = slices[0][0]
        for start, end in slices:
            if start > cover_end:
                gaps += 1
                largest = max(largest, start - cover_end)
            busy += max(0.0, end - max(start, cover_end))
            cover_end = max(cover_end, end)
        span = cover_end - slices[0][0]
        process = names.get((pid, None), f"pid {pid}")
        track = names.get((pid, tid), f"tid {tid}")
        stream_table[f"{process} / {track}"] = {
            "busy_us": busy, "span_us": span, "idle_us": span - busy, "gaps": gaps,
            "largest_gap_us": largest}
    return {"kernels": kernel_table, "waits": waits,
            "wait_total_us": sum(w["total_us"] for w in waits.values()),
            "streams": stream_table}


def _table(header: tuple[str, ...], rows: list[tuple[Any, ...]]) -> str:
    widths = [max(len(str(cell)) for cell in column) for column in zip(header, *rows)]
    lines = ["  ".join(str(cell).rjust(width) if i else str(cell).ljust(width)
                       for i, (cell, width) in enumerate(zip(row, widths)))
             for row in [header, *rows]]
    lines.insert(1, "  ".join("-" * width for width in widths))
    return "\n".join(lines)


def format_summary(summary: dict[str, Any]) -> str:
    """Render :func:`summarize`'s result as text tables.

    Parameters
    ----------
    summary : dict

    Returns
    -------
    str
    """
    parts = []
    rows: list[tuple[Any, ...]] = [
        (name, k["count"], f"{k['total_us'] / 1000:.3f}", f"{k['mean_us']:.1f}",
         f"{k['p95_us']:.1f}", k["bytes"] or "")
        for name, k in sorted(summary["kernels"].items(), key=lambda item: -item[1]["total_us"])]
    parts.append("Device commands\n" + _table(
        ("name", "count", "total ms", "mean us", "p95 us", "bytes"), rows))
    rows = [(name, w["count"], f"{w['total_us'] / 1000:.3f}")
            for name, w in sorted(summary["waits"].items())]
    rows.append(("all host waits", sum(w["count"] for w in summary["waits"].values()),
                 f"{summary['wait_total_us'] / 1000:.3f}"))
    parts.append("Host waits\n" + _table(("wait", "count", "total ms"), rows))
    rows = [(name, f"{s['span_us'] / 1000:.3f}", f"{s['busy_us'] / 1000:.3f}",
             f"{s['idle_us'] / 1000:.3f}", s["gaps"], f"{s['largest_gap_us']:.1f}")
            for name, s in sorted(summary["streams"].items())]
    parts.append("Streams (idle = gaps between commands, first start to last end)\n" + _table(
        ("stream", "span ms", "busy ms", "idle ms", "gaps", "largest gap us"), rows))
    return "\n\n".join(parts) + "\n"
