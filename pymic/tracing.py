"""Timelines of every stream: recording, writing and summarising traces.

``with pymic.trace("trace.json"):`` (or ``PYMIC_TRACE=trace.json`` for a
whole run) records every command the engine runs -- when the host enqueued
it, when it started and ended on the device, the kernel's name, the bytes
moved, its stream and device -- and every host wait (stream, event and
device syncs, an enqueue waiting for room in a full stream).  The file is
Chrome trace-event JSON, which the Perfetto UI (https://ui.perfetto.dev)
and ``chrome://tracing`` open directly:

- one process per device, one thread (track) per stream, a complete slice
  (``"ph": "X"``) per command;
- one process for the host, a track per host thread, with a slice per wait
  and an instant marker (``"ph": "i"``) where each command was enqueued;
- times in microseconds from the start of the trace.

The engine records into per-stream buffers with no lock and no allocation
per command; the file is written when the trace ends.
"""

import atexit
import json
import os
import threading
import time
from collections.abc import Sequence
from typing import Any, Literal

from . import _engine
from ._engine import OffloadError

#: Process id of the host's tracks in the trace file; devices follow.
HOST_PID = 1

_COMMAND_KINDS = {1: "invoke", 2: "copy", 3: "copy", 4: "copy", 5: "memory", 6: "event",
                  7: "event"}
_WAIT_KINDS = {1: "stream", 2: "event", 3: "device", 4: "room"}

#: Categories of device slices (everything else in a pymic trace is a host wait
#: or an enqueue marker).
DEVICE_CATEGORIES = frozenset(_COMMAND_KINDS.values())

# A timed wait that gave up and the next one of the same thread and target
# are one wait when the second starts within this many nanoseconds.
_WAIT_MERGE_NS = 1_000_000


def device_pid(device_id: int) -> int:
    """Return the trace-file process id of a device.

    Parameters
    ----------
    device_id : int
        The device number.

    Returns
    -------
    int
        ``HOST_PID + 1 + device_id``.
    """
    return HOST_PID + 1 + device_id


class Trace:
    """A recording of every command and host wait, as a context manager.

    Use :func:`pymic.trace` to make one.  On leaving the ``with`` block the
    recording stops and, if a path was given, the file is written.
    Commands still queued or running then appear with their enqueue time
    only (sync the streams inside the block to see them complete).

    Parameters
    ----------
    path : str or os.PathLike or None
        File to write the Chrome/Perfetto JSON to; None keeps the events
        in memory only (:attr:`events`).
    commands_per_stream : int
        Room for this many commands per stream (0: the engine's default,
        262144); later ones are counted as dropped.

    Attributes
    ----------
    path : str or None
        Where the trace is written.
    events : list of dict
        The trace events, filled when the recording stops.
    dropped : int
        Records lost to full buffers.
    """

    def __init__(self, path: str | os.PathLike[str] | None = None,
                 commands_per_stream: int = 0) -> None:
        self.path = os.fspath(path) if path is not None else None
        if isinstance(commands_per_stream, bool) or not isinstance(commands_per_stream, int):
            raise TypeError("commands_per_stream must be an int")
        if commands_per_stream < 0:
            raise ValueError("commands_per_stream must be >= 0")
        self._capacity = commands_per_stream
        self.events: list[dict[str, Any]] = []
        self.dropped = 0
        self._origin_ns: int | None = None
        self._recording = False

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
        """
        if _engine.trace_active():
            raise OffloadError("pymic.trace: a trace is already being recorded "
                               "(another pymic.trace block, or PYMIC_TRACE)")
        self._origin_ns = time.monotonic_ns()
        _engine.trace_start(self._capacity)
        self._recording = True
        return self

    def stop(self) -> list[dict[str, Any]]:
        """Stop recording, build :attr:`events` and write the file if any.

        Returns
        -------
        list of dict
            The trace events.
        """
        if not self._recording:
            return self.events
        self._recording = False
        _engine.trace_stop()
        commands, waits, self.dropped = _engine.trace_read()
        self.events = build_events(commands, waits, self.dropped, self._origin_ns)
        if self.path is not None:
            write_trace(self.path, self.events, self.dropped)
        return self.events

    def __enter__(self) -> "Trace":
        return self.start()

    def __exit__(self, *exc_info: object) -> Literal[False]:
        self.stop()
        return False


def trace(path: str | os.PathLike[str] | None = None, commands_per_stream: int = 0) -> Trace:
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
    commands_per_stream : int
        Room for this many commands per stream (0: default, 262144).

    Returns
    -------
    Trace
        A context manager; also usable with ``start()`` / ``stop()``.

    Raises
    ------
    OffloadError
        On entering, if another trace is being recorded.
    """
    return Trace(path, commands_per_stream)


# --------------------------------------------------------------- events

def _us(ns: int, origin_ns: int) -> float:
    return round((ns - origin_ns) / 1000.0, 3)


def _stream_names() -> dict[int, str]:
    """Names of the streams pymic knows: {trace stream number: name}."""
    names: dict[int, str] = {}
    from .device import OffloadDevice
    for device in list(OffloadDevice._instances.values()):
        stream = device._default_stream
        if stream is not None:
            number = _engine.trace_stream_number(stream)
            if number:
                names[number] = f"default stream ({number})"
    return names


def _thread_names() -> dict[int, str]:
    return {t.native_id: t.name for t in threading.enumerate() if t.native_id is not None}


def _merge_waits(waits: "list[_engine.TraceWait]") -> "list[_engine.TraceWait]":
    """Join the slices of a wait done in timed pieces into one wait."""
    merged: list[_engine.TraceWait] = []
    open_by_key: dict[tuple[int, int, int, int, int], int] = {}
    for wait in sorted(waits, key=lambda w: w[4]):
        kind, device, stream, target, start, end, thread, timed_out = wait
        key = (thread, kind, device, stream, target)
        previous = open_by_key.get(key)
        if previous is not None and start - merged[previous][5] <= _WAIT_MERGE_NS:
            merged[previous] = merged[previous][:5] + (end, thread, timed_out)
        else:
            merged.append(wait)
            previous = len(merged) - 1
        if timed_out:
            open_by_key[key] = previous
        else:
            open_by_key.pop(key, None)
    return merged


def _wait_name(kind: int, device: int, stream: int) -> str:
    if kind == 1:
        return f"sync stream {stream}"
    if kind == 2:
        return "sync event"
    if kind == 3:
        return f"sync device {device}"
    return f"wait for room in stream {stream}"


def build_events(commands: "list[_engine.TraceCommand]", waits: "list[_engine.TraceWait]",
                 dropped: int = 0, origin_ns: int | None = None) -> list[dict[str, Any]]:
    """Turn the engine's records into Chrome trace events.

    Parameters
    ----------
    commands : list of tuple
        As returned by ``_engine.trace_read()``.
    waits : list of tuple
        Likewise.
    dropped : int
        Records lost to full buffers (noted in the metadata).
    origin_ns : int or None
        Time zero (``time.monotonic_ns()``); default: the earliest record.

    Returns
    -------
    list of dict
        Metadata events first, then slices and markers sorted by time.
    """
    waits = _merge_waits(waits)
    if origin_ns is None:
        stamps = [c[6] for c in commands] + [w[4] for w in waits]
        origin_ns = min(stamps) if stamps else 0
    stream_names = _stream_names()
    thread_names = _thread_names()
    events: list[dict[str, Any]] = []
    tracks: dict[tuple[int, int], str] = {}  # (pid, tid) -> name
    devices = set()
    host_threads = set()

    for (device, stream, seq, name, kind, nbytes, enq, start, end, thread) in commands:
        pid = device_pid(device)
        devices.add(device)
        tracks[(pid, stream)] = stream_names.get(stream, f"stream {stream}")
        host_threads.add(thread)
        category = _COMMAND_KINDS.get(kind, "other")
        args: dict[str, Any] = {"seq": seq, "stream": stream, "device": device,
                                "enqueued_us": _us(enq, origin_ns)}
        if nbytes:
            args["bytes"] = nbytes
        if start:
            args["queued_us"] = round((start - enq) / 1000.0, 3)
            events.append({"name": name, "cat": category, "ph": "X", "pid": pid, "tid": stream,
                           "ts": _us(start, origin_ns), "dur": round((end - start) / 1000.0, 3),
                           "args": args})
        else:
            args["unfinished"] = True
            events.append({"name": name + " (not run when the trace ended)", "cat": category,
                           "ph": "i", "s": "t", "pid": pid, "tid": stream,
                           "ts": _us(enq, origin_ns), "args": args})
        events.append({"name": "enqueue " + name, "cat": "enqueue", "ph": "i", "s": "t",
                       "pid": HOST_PID, "tid": thread, "ts": _us(enq, origin_ns),
                       "args": {"stream": stream, "device": device, "seq": seq}})

    for (kind, device, stream, target, start, end, thread, timed_out) in waits:
        host_threads.add(thread)
        args = {"kind": _WAIT_KINDS.get(kind, "wait"), "target": target}
        if device >= 0:
            args["device"] = device
        if stream >= 0:
            args["stream"] = stream
        if timed_out:
            args["timed_out"] = True
        events.append({"name": _wait_name(kind, device, stream), "cat": "wait", "ph": "X",
                       "pid": HOST_PID, "tid": thread, "ts": _us(start, origin_ns),
                       "dur": round((end - start) / 1000.0, 3), "args": args})

    events.sort(key=lambda e: (e["ts"], -e.get("dur", 0)))
    meta = [{"name": "process_name", "ph": "M", "pid": HOST_PID, "tid": 0,
             "args": {"name": f"host (pid {os.getpid()})"}},
            {"name": "process_sort_index", "ph": "M", "pid": HOST_PID, "tid": 0,
             "args": {"sort_index": 0}}]
    device_labels = _device_labels()
    for device in sorted(devices):
        pid = device_pid(device)
        meta.append({"name": "process_name", "ph": "M", "pid": pid, "tid": 0,
                     "args": {"name": device_labels.get(device, f"device {device}")}})
        meta.append({"name": "process_sort_index", "ph": "M", "pid": pid, "tid": 0,
                     "args": {"sort_index": 1 + device}})
    for thread in sorted(host_threads):
        label = thread_names.get(thread, "thread")
        meta.append({"name": "thread_name", "ph": "M", "pid": HOST_PID, "tid": thread,
                     "args": {"name": f"{label} ({thread})"}})
    for (pid, tid), name in sorted(tracks.items()):
        meta.append({"name": "thread_name", "ph": "M", "pid": pid, "tid": tid,
                     "args": {"name": name}})
        meta.append({"name": "thread_sort_index", "ph": "M", "pid": pid, "tid": tid,
                     "args": {"sort_index": tid}})
    return meta + events


def _device_labels() -> dict[int, str]:
    labels: dict[int, str] = {}
    for device_id in range(_engine.device_count()):
        info = _engine.device_info(device_id)
        labels[device_id] = f"device {device_id} ({info['kind']} {info['name']})"
    return labels


def write_trace(path: str | os.PathLike[str], events: list[dict[str, Any]],
                dropped: int = 0) -> None:
    """Write trace events as a Chrome/Perfetto JSON file.

    Parameters
    ----------
    path : str or os.PathLike
        The file to write (replaced atomically).
    events : list of dict
        Trace events, e.g. :attr:`Trace.events`.
    dropped : int
        Records lost to full buffers, kept in ``otherData``.

    Returns
    -------
    None
    """
    path = os.fspath(path)
    document = {
        "traceEvents": events,
        "displayTimeUnit": "ns",
        "otherData": {"producer": "pymic %d.%d.%d" % _engine.version(),
                      "dropped_records": dropped},
    }
    temporary = f"{path}.tmp{os.getpid()}"
    with open(temporary, "w") as stream:
        json.dump(document, stream, separators=(",", ":"))
    os.replace(temporary, path)


# ------------------------------------------------------------ PYMIC_TRACE

_environment_trace: Trace | None = None
_environment_pid: int | None = None


def _write_environment_trace() -> None:
    # A fork()ed child that exits through atexit must not overwrite the
    # parent's file with the records it inherited.
    if _environment_trace is not None and os.getpid() == _environment_pid:
        try:
            _environment_trace.stop()
        except (OSError, OffloadError) as error:  # at exit: report, do not raise
            import sys
            print(f"PYMIC: could not write the trace {_environment_trace.path}: {error}",
                  file=sys.stderr)


def start_from_environment() -> Trace | None:
    """Start the whole-run trace PYMIC_TRACE asks for (called at import).

    The file is written at interpreter exit, after pymic has drained every
    device.

    Returns
    -------
    Trace or None
        The running trace, or None when PYMIC_TRACE is unset or empty.
    """
    global _environment_trace, _environment_pid
    path = os.environ.get("PYMIC_TRACE", "")
    if not path or _environment_trace is not None:
        return _environment_trace
    _environment_pid = os.getpid()
    _environment_trace = Trace(os.path.abspath(path)).start()
    atexit.register(_write_environment_trace)
    return _environment_trace


# ---------------------------------------------------------------- summary

def _percentile(sorted_values: list[float], fraction: float) -> float:
    """Nearest-rank percentile of an ascending list."""
    if not sorted_values:
        return 0.0
    rank = max(1, -(-len(sorted_values) * fraction // 1))  # ceil
    return sorted_values[int(rank) - 1]


def load_events(path: str | os.PathLike[str]) -> list[dict[str, Any]]:
    """Read the events of a trace file (object or bare-array form).

    Parameters
    ----------
    path : str or os.PathLike

    Returns
    -------
    list of dict
    """
    with open(path) as stream:
        document: dict[str, Any] | list[dict[str, Any]] = json.load(stream)
    if isinstance(document, dict):
        return list(document.get("traceEvents", []))
    return document


def summarize(events: list[dict[str, Any]]) -> dict[str, Any]:
    """Per-kernel times, host waits and idle gaps of a trace.

    Parameters
    ----------
    events : list of dict
        Trace events (from :func:`load_events` or :attr:`Trace.events`).

    Returns
    -------
    dict
        ``kernels``: {name: {count, total_us, mean_us, p95_us, bytes}} for
        every device slice name; ``waits``: {wait name: {count, total_us}};
        ``wait_total_us``; ``streams``: {track name: {busy_us, span_us,
        idle_us, gaps, largest_gap_us}}.
    """
    names: dict[tuple[int, int | None], str] = {}
    for event in events:
        if event.get("ph") == "M" and event.get("name") in ("thread_name", "process_name"):
            key = (event["pid"], event.get("tid", 0) if event["name"] == "thread_name" else None)
            names[key] = event["args"]["name"]
    kernels: dict[str, dict[str, Any]]
    waits: dict[str, dict[str, Any]]
    tracks: dict[tuple[int, int], list[tuple[float, float]]]
    kernels, waits, tracks = {}, {}, {}
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


def _table(header: Sequence[object], rows: Sequence[Sequence[object]]) -> str:
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
    parts: list[str] = []
    rows: list[tuple[object, ...]]
    rows = [(name, k["count"], f"{k['total_us'] / 1000:.3f}", f"{k['mean_us']:.1f}",
             f"{k['p95_us']:.1f}", k["bytes"] or "")
            for name, k in sorted(summary["kernels"].items(),
                                  key=lambda item: -item[1]["total_us"])]
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
