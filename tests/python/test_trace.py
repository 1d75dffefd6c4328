"""pymic.trace / PYMIC_TRACE: the file is valid Trace Event Format and shows
what a two-stream pipeline did (slices, their order, their overlap) and the
host's waits.  Orderings are forced with events and flags, never timed."""

import ctypes
import json
import os
import pwd
import shutil
import stat
import subprocess
import sys
import tempfile
import textwrap
import threading
import time
import tracemalloc

import numpy as np
import pytest

import pymic

HANDSHAKE_SOURCE = r"""
#include <pymic_kernel.h>
#include <time.h>

static void pause_briefly(void)
{
    struct timespec t = {0, 20000};
    nanosleep(&t, NULL);
}

/* Raise my flag, then wait for the other's: both kernels must be running
 * at the same time for either to finish. */
PYMIC_KERNEL void rendezvous(int64_t *flags, const int64_t *mine, const int64_t *other)
{
    __atomic_store_n(&flags[*mine], 1, __ATOMIC_SEQ_CST);
    while (!__atomic_load_n(&flags[*other], __ATOMIC_SEQ_CST))
        pause_briefly();
}

PYMIC_KERNEL void wait_flag(int64_t *flags, const int64_t *which)
{
    while (!__atomic_load_n(&flags[*which], __ATOMIC_SEQ_CST))
        pause_briefly();
}

PYMIC_KERNEL void sleep_ms(const int64_t *ms)
{
    struct timespec t = {(time_t)(*ms / 1000), (long)(*ms % 1000) * 1000000L};
    nanosleep(&t, NULL);
}

PYMIC_KERNEL void add_one(double *x, const int64_t *n)
{
    for (int64_t i = 0; i < *n; i++)
        x[i] += 1.0;
}
"""

ALLOWED_PHASES = set("BEXiIMCbensft")


@pytest.fixture(scope="module")
def kernels(device, tmp_path_factory):
    cache = tmp_path_factory.mktemp("trace-cache")
    saved = os.environ.get("PYMIC_CACHE_DIR")
    os.environ["PYMIC_CACHE_DIR"] = str(cache)
    try:
        yield device.load_source(HANDSHAKE_SOURCE)
    finally:
        if saved is None:
            os.environ.pop("PYMIC_CACHE_DIR", None)
        else:
            os.environ["PYMIC_CACHE_DIR"] = saved


def validate_trace_event_format(document):
    """Check a trace file against the Trace Event Format; return its events."""
    assert isinstance(document, dict) and isinstance(document["traceEvents"], list)
    assert document.get("displayTimeUnit") in (None, "ms", "ns")
    events = document["traceEvents"]
    named_processes, named_threads, used_tracks = set(), set(), set()
    open_slices = {}
    for event in events:
        for field, kind in (("name", str), ("ph", str), ("pid", int), ("tid", int)):
            assert isinstance(event.get(field), kind), (field, event)
        assert event["ph"] in ALLOWED_PHASES, event
        if event["ph"] == "M":
            assert isinstance(event["args"]["name" if "name" in event["name"] else
                                            "sort_index"], (str, int)), event
            if event["name"] == "process_name":
                named_processes.add(event["pid"])
            elif event["name"] == "thread_name":
                named_threads.add((event["pid"], event["tid"]))
            continue
        assert isinstance(event["ts"], (int, float)) and event["ts"] >= 0, event
        used_tracks.add((event["pid"], event["tid"]))
        if event["ph"] == "X":
            assert isinstance(event["dur"], (int, float)) and event["dur"] >= 0, event
        elif event["ph"] == "B":
            open_slices.setdefault((event["pid"], event["tid"]), []).append(event)
        elif event["ph"] == "E":
            assert open_slices.get((event["pid"], event["tid"])), event
            open_slices[(event["pid"], event["tid"])].pop()
        elif event["ph"] in "iI":
            assert event.get("s", "t") in "gpt", event
        if "args" in event:
            assert isinstance(event["args"], dict)
    assert not any(open_slices.values()), "unbalanced B/E slices"
    # Every track and process used has a name given by a metadata event.
    assert used_tracks <= named_threads, used_tracks - named_threads
    assert {pid for pid, _ in used_tracks} <= named_processes
    return events


def flows_of(events):
    """Flow events by id: {id: {"s": start event, "f": finish event}}."""
    flows = {}
    for event in events:
        if event["ph"] in "sf" and event["ph"] != "":
            assert event["cat"] == "flow" and "id" in event, event
            assert event["ph"] not in flows.setdefault(event["id"], {}), event
            flows[event["id"]][event["ph"]] = event
    assert all(set(flow) == {"s", "f"} for flow in flows.values())
    return flows


def line_of(text):
    """The number of the first line of this file holding `text`."""
    return next(number for number, line in enumerate(open(__file__), 1) if text in line)


def slices_of(events, pid, tid):
    return sorted((e for e in events if e["ph"] == "X" and e["pid"] == pid and e["tid"] == tid),
                  key=lambda e: e["ts"])


def overlap(a, b):
    return a["ts"] < b["ts"] + b["dur"] and b["ts"] < a["ts"] + a["dur"]


def open_flag_later(flags_address, index, main_thread_line):
    """Set flags[index] once the main thread sits at `main_thread_line`."""
    main = threading.main_thread().ident

    def run():
        while True:
            frame = sys._current_frames().get(main)
            while frame is not None and frame.f_code.co_name != "test_two_stream_pipeline":
                frame = frame.f_back
            if frame is not None and frame.f_lineno == main_thread_line:
                break
            time.sleep(0.001)
        time.sleep(0.1)
        ctypes.c_int64.from_address(flags_address + 8 * index).value = 1

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    return thread


@pytest.mark.device_memory_here
def test_two_stream_pipeline(device, kernels, tmp_path):
    path = tmp_path / "trace.json"
    load, finish = device.create_stream(), device.create_stream()
    flags = load.allocate_device_memory(8 * 4)
    zeros = np.zeros(4, dtype=np.int64)
    load.transfer_host2device(zeros.ctypes.data, flags, zeros.nbytes)
    load.sync()
    address = load.translate_device_pointer(flags)
    data = np.arange(1000, dtype=np.float64)

    with pymic.trace(path) as recording:
        chunk = load.bind(data)                              # h2d on `load`
        load.invoke(kernels.rendezvous, flags, 0, 1)         # runs while ...
        finish.invoke(kernels.rendezvous, flags, 1, 0)       # ... this one runs
        load.invoke(kernels.sleep_ms, 20)
        chunk_ready = load.record_event()
        finish.wait_event(chunk_ready)
        chunk.assign_stream(finish)
        finish.invoke(kernels.add_one, chunk, data.size)     # only after the event
        chunk.update_host()
        finish.invoke(kernels.wait_flag, flags, 2)           # held until the host thread
        opener = open_flag_later(address, 2, SYNC_LINE)
        finish.sync()  # SYNC_LINE: the host waits here
        chunk_ready.sync()
        opener.join()
    assert recording.path == os.fspath(path)
    assert np.array_equal(data, np.arange(1000.0) + 1.0)

    document = json.loads(path.read_text())
    events = validate_trace_event_format(document)
    assert events == json.loads(json.dumps(recording.events))
    load_tid = pymic.tracing._engine.trace_stream_number(load)
    finish_tid = pymic.tracing._engine.trace_stream_number(finish)
    assert load_tid > 0 and finish_tid > 0 and load_tid != finish_tid
    pid = pymic.tracing.device_pid(device.device_id)
    on_load = slices_of(events, pid, load_tid)
    on_finish = slices_of(events, pid, finish_tid)
    # (assign_stream orders the array's streams with an event of its own.)
    assert [e["name"] for e in on_load] == ["h2d", "rendezvous", "sleep_ms", "record event",
                                            "record event"]
    assert [e["name"] for e in on_finish] == ["rendezvous", "wait event", "wait event",
                                              "add_one", "d2h", "wait_flag"]
    add_one, d2h, wait_flag = on_finish[3:]
    # One track per stream: every command of a stream is on its track.
    for track, tid in ((on_load, load_tid), (on_finish, finish_tid)):
        assert all(e["args"]["stream"] == tid and e["args"]["device"] == device.device_id
                   for e in track)
        # In-stream order: slices follow one another, by sequence number.
        assert [e["args"]["seq"] for e in track] == sorted(e["args"]["seq"] for e in track)
        for before, after in zip(track, track[1:]):
            assert before["ts"] + before["dur"] <= after["ts"] + 0.001
        for e in track:
            assert e["args"]["enqueued_us"] <= e["ts"] + 0.001
    assert on_load[0]["args"]["bytes"] == data.nbytes and on_load[0]["cat"] == "copy"
    assert d2h["args"]["bytes"] == data.nbytes
    assert on_load[1]["cat"] == "invoke"
    # The two rendezvous kernels ran at the same time.
    assert overlap(on_load[1], on_finish[0])
    # The event orders the streams: add_one starts after `load` reached the
    # record (whose slice may end a little later: it signals waiters first)
    # and so after the kernel before it.
    record = on_load[3]
    assert add_one["ts"] >= record["ts"]
    assert add_one["ts"] >= on_load[2]["ts"] + on_load[2]["dur"] - 0.001
    # Microseconds: a kernel sleeping 20 ms lasts at least 20000 units,
    # and not a thousand times that.
    assert 20000 <= on_load[2]["dur"] < 20000 * 1000
    # Host waits, on the track of the thread that waited.
    main = threading.main_thread().native_id
    waits = [e for e in events if e["ph"] == "X" and e.get("cat") == "wait"]
    stream_sync = [e for e in waits if e["args"]["kind"] == "stream"
                   and e["args"].get("stream") == finish_tid]
    assert stream_sync and all(e["pid"] == pymic.tracing.host_pid() and e["tid"] == main
                               for e in stream_sync)
    # The host was waiting when wait_flag ended.  The sync is recorded as
    # one wait per 10 ms slice (Python checks for Ctrl-C between them), so
    # the kernel may end between two slices: check the span of them all.
    flag_end = wait_flag["ts"] + wait_flag["dur"]
    assert min(e["ts"] for e in stream_sync) <= flag_end + 0.001
    assert max(e["ts"] + e["dur"] for e in stream_sync) >= flag_end - 0.001
    assert any(e["args"]["kind"] == "event" for e in waits)
    # Enqueue markers on the host thread, one per command: slices of no
    # length, so that flows can leave them.
    markers = [e for e in events if e.get("cat") == "enqueue"]
    assert len(markers) == len(on_load) + len(on_finish)
    assert all(e["tid"] == main and e["ph"] == "X" and e["dur"] == 0 for e in markers)
    # Flow arrows: from each enqueue marker to its command's slice ...
    flows = flows_of(events)
    enqueue_flows = [f for f in flows.values() if f["s"]["name"] == "enqueue"]
    assert len(enqueue_flows) == len(markers)
    marker_at = {(e["tid"], e["ts"], e["args"]["seq"], e["args"]["stream"]) for e in markers}
    for command in on_load + on_finish:
        (flow,) = [f for f in enqueue_flows
                   if (f["f"]["pid"], f["f"]["tid"], f["f"]["ts"]) ==
                   (pid, command["tid"], command["ts"])]
        assert flow["f"]["bp"] == "e"
        assert (flow["s"]["tid"], flow["s"]["ts"], command["args"]["seq"],
                command["args"]["stream"]) in marker_at
        assert flow["s"]["ts"] == command["args"]["enqueued_us"]
    # ... and from each record_event to the waits it released: the stream
    # that waited (twice: chunk_ready, then assign_stream's own event) and
    # the host's chunk_ready.sync().
    released = {}
    for flow in flows.values():
        if flow["s"]["name"] == "event":
            assert (flow["s"]["pid"], flow["s"]["tid"]) == (pid, load_tid)
            released.setdefault(flow["s"]["ts"], []).append(
                (flow["f"]["pid"], flow["f"]["tid"], flow["f"]["ts"]))
    event_sync = next(e for e in waits if e["args"]["kind"] == "event")
    assert released == {
        on_load[3]["ts"]: [(pid, finish_tid, on_finish[1]["ts"]),
                           (pymic.tracing.host_pid(), main, event_sync["ts"])],
        on_load[4]["ts"]: [(pid, finish_tid, on_finish[2]["ts"])]}
    # Call sites: each command and wait carries the line that asked for it.
    here = os.path.basename(__file__)
    assert on_load[0]["args"]["site"].endswith(f"{here}:{line_of('chunk = load.bind(data)')}")
    assert on_finish[3]["args"]["site"].endswith(
        f"{here}:{line_of('finish.invoke(kernels.add_one, chunk, data.size)')}")
    assert d2h["args"]["site"].endswith(f"{here}:{line_of('chunk.update_host()')}")
    assert all(e["args"]["site"].endswith(f"{here}:{SYNC_LINE}") for e in stream_sync)
    assert event_sync["args"]["site"].endswith(f"{here}:{line_of('chunk_ready.sync()')}")
    assert "stack" not in on_load[0]["args"]  # compact: the call only
    assert document["displayTimeUnit"] == "ms"
    assert document["otherData"]["pid"] == os.getpid()
    names = {(e["pid"], e["tid"]): e["args"]["name"] for e in events
             if e["ph"] == "M" and e["name"] == "thread_name"}
    assert names[(pid, load_tid)] == f"stream {load_tid}"
    assert "MainThread" in names[(pymic.tracing.host_pid(), main)]
    load.deallocate_device_memory(flags)
    load.sync()


# The line of `finish.sync()` above, found by its comment.
SYNC_LINE = next(number for number, line in enumerate(open(__file__), 1)
                 if "# SYNC_LINE: the host waits here" in line)


def test_nothing_recorded_outside_a_trace(device, kernels, stream):
    with pymic.trace() as recording:
        stream.invoke(kernels.add_one, np.zeros(3), 3)
    inside = [e for e in recording.events if e["ph"] == "X"
              and e.get("cat") in pymic.tracing.DEVICE_CATEGORIES]
    assert [e["name"] for e in inside] == ["h2d", "add_one", "d2h", "free"]
    # After the block the recorder is off: a later trace starts empty.
    stream.invoke(kernels.add_one, np.zeros(3), 3)
    stream.sync()
    with pymic.trace() as empty:
        pass
    assert not [e for e in empty.events if e["ph"] != "M"]


def spans_asked_of_mpi_devices():
    """How many commands asked an MPI device for its span (the plugin's count)."""
    library = ctypes.CDLL(os.path.join(os.path.dirname(pymic.__file__), "libpymic_mpi.so"))
    library.pymic_mpi_spans_asked.restype = ctypes.c_uint64
    return library.pymic_mpi_spans_asked()


def test_device_side_slices_of_an_mpi_device(device, kernels, stream, tmp_path):
    # Each command on an MPI device also has the span it had in the device
    # process, on a track of its own, placed on the host's clock: inside
    # the command's host span (within the clock's stated error), in order.
    data = np.arange(1000.0)
    with pymic.trace(tmp_path / "trace.json") as recording:
        bound = stream.bind(data)                        # h2d
        stream.invoke(kernels.add_one, bound, data.size)
        stream.invoke(kernels.add_one, bound, data.size)
        bound.update_host()                              # d2h
        stream.sync()
    assert np.array_equal(bound.array, np.arange(1000.0) + 2.0)
    events = validate_trace_event_format(json.loads((tmp_path / "trace.json").read_text()))
    base = pymic.tracing.DEVICE_SIDE_TID_BASE
    pid = pymic.tracing.device_pid(device.device_id)
    on_host = {e["args"]["seq"]: e for e in events if e["ph"] == "X" and e["pid"] == pid
               and e["tid"] < base and e.get("cat") in pymic.tracing.DEVICE_CATEGORIES}
    on_device = sorted((e for e in events if e["ph"] == "X" and e["pid"] == pid
                        and e["tid"] >= base), key=lambda e: e["args"]["seq"])
    assert all(e["cat"] == pymic.tracing.DEVICE_SIDE_CATEGORY for e in on_device)
    if device.kind != "mpi":
        assert on_device == []  # the device has no process and clock of its own
        return
    suffix = pymic.tracing.DEVICE_SIDE_SUFFIX
    assert [e["name"] for e in on_device] == [n + suffix for n in ("h2d", "add_one", "add_one",
                                                                   "d2h")]
    tracks = {e["tid"]: e["args"]["name"] for e in events if e["name"] == "thread_name"
              and e["pid"] == pid}
    for slice_ in on_device:
        host = on_host[slice_["args"]["seq"]]
        assert slice_["tid"] == base + host["tid"]
        assert tracks[slice_["tid"]].endswith("on the device")
        error = slice_["args"]["clock_error_us"] + 0.002  # + the rounding of ts and dur
        assert slice_["name"] == host["name"] + suffix and slice_["args"]["kind"] == host["cat"]
        assert host["ts"] - error <= slice_["ts"], (host, slice_)
        assert slice_["ts"] + slice_["dur"] <= host["ts"] + host["dur"] + error, (host, slice_)
    # One clock translation for the whole trace: the device's own order.
    for before, after in zip(on_device, on_device[1:]):
        assert before["ts"] + before["dur"] <= after["ts"] + 0.002, (before, after)


def test_an_untraced_run_asks_an_mpi_device_for_nothing(device, kernels, stream):
    if device.kind != "mpi":
        pytest.skip("an MPI device's protocol (PYMIC_DEVICES=mpi)")
    asked = spans_asked_of_mpi_devices()
    stream.invoke(kernels.add_one, np.zeros(3), 3)      # h2d, add_one, d2h: untraced
    stream.sync()
    assert spans_asked_of_mpi_devices() == asked
    with pymic.trace():
        stream.invoke(kernels.add_one, np.zeros(3), 3)
        stream.sync()
    assert spans_asked_of_mpi_devices() == asked + 3    # the traced ones, each once
    stream.invoke(kernels.add_one, np.zeros(3), 3)      # after the trace: nothing again
    stream.sync()
    assert spans_asked_of_mpi_devices() == asked + 3


@pytest.mark.device_memory_here
def test_unfinished_commands_are_marked(device, kernels, stream):
    flags = stream.allocate_device_memory(8)
    zero = np.zeros(1, dtype=np.int64)
    stream.transfer_host2device(zero.ctypes.data, flags, 8)
    stream.sync()
    address = stream.translate_device_pointer(flags)
    with pymic.trace() as recording:
        stream.invoke(kernels.wait_flag, flags, 0)
    ctypes.c_int64.from_address(address).value = 1
    stream.sync()
    (marker,) = [e for e in recording.events if e.get("cat") == "invoke"]
    assert marker["ph"] == "i" and marker["args"]["unfinished"]
    stream.deallocate_device_memory(flags)


def test_one_trace_at_a_time(device):
    with pymic.trace():
        with pytest.raises(pymic.OffloadError, match="already"):
            with pymic.trace():
                pass
    with pymic.trace():  # usable again
        pass


def test_bad_arguments():
    with pytest.raises(TypeError):
        pymic.trace(commands_per_stream="many")
    with pytest.raises(ValueError):
        pymic.trace(commands_per_stream=-1)


def test_full_buffer_counts_dropped(device, kernels, stream):
    with pymic.trace(commands_per_stream=2) as recording:
        for _ in range(5):
            stream.invoke(kernels.sleep_ms, 0)
        stream.sync()
    assert len([e for e in recording.events if e.get("cat") == "invoke"]) == 2
    assert recording.dropped == 3


def test_pymic_trace_environment_writes_file_at_exit(tmp_path, kernels):
    path = tmp_path / "run.json"
    script = (
        "import numpy, pymic\n"
        "lib = pymic.devices[0].load_source(open(%r).read())\n"
        "s = pymic.devices[0].get_default_stream()\n"
        "x = numpy.zeros(8)\n"
        "s.invoke(lib.add_one, x, 8)\n"
        "print(x[0])\n") % (str(tmp_path / "kernel.c"),)
    (tmp_path / "kernel.c").write_text(HANDSHAKE_SOURCE)
    env = dict(os.environ, PYMIC_TRACE=str(path))
    result = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True,
                            env=env, timeout=300, cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "1.0"
    events = validate_trace_event_format(json.loads(path.read_text()))
    names = [e["name"] for e in events if e["ph"] == "X"
             and e.get("cat") in pymic.tracing.DEVICE_CATEGORIES]
    assert names[:3] == ["h2d", "add_one", "d2h"]
    tracks = {e["args"]["name"] for e in events if e["ph"] == "M" and e["name"] == "thread_name"}
    assert any(name.startswith("default stream") for name in tracks)


def test_summary_of_a_trace(device, kernels, stream):
    with pymic.trace() as recording:
        for _ in range(4):
            stream.invoke(kernels.sleep_ms, 1)
        stream.invoke(kernels.add_one, np.zeros(16), 16)
    summary = pymic.tracing.summarize(recording.events)
    sleeps = summary["kernels"]["sleep_ms"]
    assert sleeps["count"] == 4 and sleeps["total_us"] >= 4000
    assert sleeps["mean_us"] == pytest.approx(sleeps["total_us"] / 4)
    assert sleeps["p95_us"] == max(e["dur"] for e in recording.events
                                   if e.get("name") == "sleep_ms")
    assert summary["kernels"]["h2d"]["bytes"] == 128
    (track,) = summary["streams"].values()
    assert track["busy_us"] <= track["span_us"] + 0.01
    assert track["idle_us"] == pytest.approx(track["span_us"] - track["busy_us"])
    text = pymic.tracing.format_summary(summary)
    assert "sleep_ms" in text and "Host waits" in text and "idle" in text


def test_a_forked_child_does_not_overwrite_the_run_trace(tmp_path, kernels):
    path = tmp_path / "run.json"
    marker = tmp_path / "child-done"
    (tmp_path / "kernel.c").write_text(HANDSHAKE_SOURCE)
    script = textwrap.dedent(f"""
        import atexit, os, sys, time
        # Registered before pymic's handlers, so in the child it runs after them.
        atexit.register(lambda: os.getpid() != parent and open({str(marker)!r}, "w").close())
        parent = os.getpid()
        import pymic
        lib = pymic.devices[0].load_source(open("kernel.c").read())
        stream = pymic.devices[0].get_default_stream()
        stream.invoke(lib.sleep_ms, 0)
        stream.sync()
        if os.fork() == 0:
            time.sleep(0.5)   # exit after the parent, through atexit
            sys.exit(0)
        stream.invoke(lib.sleep_ms, 1)
        stream.sync()
    """)
    env = dict(os.environ, PYMIC_TRACE=str(path))
    result = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True,
                            env=env, timeout=300, cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    deadline = time.monotonic() + 120
    while not marker.exists() and time.monotonic() < deadline:
        time.sleep(0.05)
    assert marker.exists()
    events = json.loads(path.read_text())["traceEvents"]
    assert [e["name"] for e in events if e.get("cat") == "invoke"] == ["sleep_ms", "sleep_ms"]


# ------------------------------------------------- writing the file safely

def traced_work(stream, kernels):
    stream.invoke(kernels.sleep_ms, 0)
    stream.sync()


def test_a_link_planted_at_the_old_temporary_name_is_not_followed(stream, kernels, tmp_path):
    precious = tmp_path / "precious.txt"
    precious.write_text("keep me")
    path = tmp_path / "trace.json"
    # Earlier versions wrote through `<path>.tmp<pid>`, following links.
    os.symlink(precious, f"{path}.tmp{os.getpid()}")
    with pymic.trace(path):
        traced_work(stream, kernels)
    assert precious.read_text() == "keep me"
    assert path.is_file() and not path.is_symlink()
    assert json.loads(path.read_text())["traceEvents"]
    # A link at the trace's own name is replaced, never written through.
    path.unlink()
    os.symlink(precious, path)
    with pymic.trace(path):
        traced_work(stream, kernels)
    assert precious.read_text() == "keep me"
    assert path.is_file() and not path.is_symlink()
    # No temporary file is left behind.
    assert sorted(os.listdir(tmp_path)) == sorted(
        ["precious.txt", "trace.json", f"trace.json.tmp{os.getpid()}"])


def test_the_file_keeps_the_mode_of_the_trace_it_replaces_or_the_umask(stream, kernels,
                                                                       tmp_path):
    path = tmp_path / "trace.json"
    saved = os.umask(0o027)
    try:
        with pymic.trace(path):
            traced_work(stream, kernels)
        assert stat.S_IMODE(path.stat().st_mode) == 0o640
        os.chmod(path, 0o600)
        with pymic.trace(path):
            traced_work(stream, kernels)
        assert stat.S_IMODE(path.stat().st_mode) == 0o600
        os.chmod(path, 0o644)
        with pymic.trace(path):
            traced_work(stream, kernels)
        assert stat.S_IMODE(path.stat().st_mode) == 0o644
    finally:
        os.umask(saved)


@pytest.mark.parametrize("case", ["missing directory", "directory as path",
                                  "file as directory"])
def test_an_unwritable_path_fails_when_the_trace_starts(tmp_path, case):
    if case == "missing directory":
        path, error, message = tmp_path / "absent" / "trace.json", FileNotFoundError, "not exist"
    elif case == "directory as path":
        (tmp_path / "dir").mkdir()
        path, error, message = tmp_path / "dir", IsADirectoryError, "is a directory"
    else:
        (tmp_path / "file").write_text("")
        path, error, message = tmp_path / "file" / "trace.json", NotADirectoryError, "not a dir"
    before = sorted(os.listdir(tmp_path))
    ran = False
    with pytest.raises(error, match=message):
        with pymic.trace(path):
            ran = True
    assert not ran and not pymic.tracing._engine.trace_active()
    assert sorted(os.listdir(tmp_path)) == before
    if case == "directory as path":
        assert os.listdir(path) == []
    with pymic.trace():  # pymic stays usable
        pass


def test_a_directory_made_at_the_path_during_the_trace_leaves_nothing_behind(tmp_path):
    path = tmp_path / "trace.json"
    with pytest.raises(IsADirectoryError):
        with pymic.trace(path):
            path.mkdir()
    assert os.listdir(tmp_path) == ["trace.json"] and os.listdir(path) == []


def test_pymic_trace_with_an_unwritable_path_fails_at_import(tmp_path):
    for path in (tmp_path / "absent" / "run.json", tmp_path):
        result = subprocess.run([sys.executable, "-c", "import pymic"], capture_output=True,
                                text=True, timeout=300, cwd=tmp_path,
                                env=dict(os.environ, PYMIC_TRACE=str(path)))
        assert result.returncode != 0
        assert "OffloadError: PYMIC_TRACE=" in result.stderr, result.stderr
        assert ("does not exist" if path != tmp_path else "is a directory") in result.stderr
    assert os.listdir(tmp_path) == []


@pytest.fixture(scope="module")
def second_user():
    """(uid, gid) of another user, made with useradd when running as root."""
    if os.geteuid() != 0:
        pytest.skip("a second user is made only when the tests run as root")
    if shutil.which("useradd") is None:
        pytest.skip("useradd is not installed")
    name, created = "pymictrace", False
    try:
        entry = pwd.getpwnam(name)
    except KeyError:
        subprocess.run(["useradd", "--no-create-home", "--shell", "/bin/false", name],
                       check=True, capture_output=True)
        entry, created = pwd.getpwnam(name), True
    yield entry.pw_uid, entry.pw_gid
    if created:
        subprocess.run(["userdel", name], capture_output=True)


def test_another_user_cannot_redirect_or_read_a_trace_in_a_shared_directory(
        stream, kernels, tmp_path, second_user):
    uid, gid = second_user
    shared = tempfile.mkdtemp(prefix="pymic-shared-", dir="/tmp")
    try:
        os.chmod(shared, 0o1777)  # like /tmp: anyone may create, sticky
        precious = tmp_path / "precious.txt"
        precious.write_text("keep me")
        path = os.path.join(shared, "trace.json")
        # The other user plants links at the old temporary name and at the
        # trace's own name.
        for link in (f"{path}.tmp{os.getpid()}", path):
            subprocess.run(["ln", "-s", str(precious), link], check=True, user=uid, group=gid)
        with pymic.trace(path):
            traced_work(stream, kernels)
        assert precious.read_text() == "keep me"
        info = os.lstat(path)
        assert stat.S_ISREG(info.st_mode) and info.st_uid == os.geteuid()
        # A private trace stays private when it is rewritten.
        os.chmod(path, 0o600)
        with pymic.trace(path):
            traced_work(stream, kernels)
        assert stat.S_IMODE(os.stat(path).st_mode) == 0o600
        reader = subprocess.run(["cat", path], capture_output=True, user=uid, group=gid)
        assert reader.returncode != 0 and b"Permission denied" in reader.stderr
        # The other user cannot trace into a directory it may not write:
        # told when the trace starts, not at exit.  (A forked child that
        # becomes that user: the interpreter may live where it cannot go.)
        mine = tempfile.mkdtemp(prefix="pymic-private-", dir=shared)
        os.chmod(mine, 0o755)
        child = os.fork()
        if child == 0:
            status = 3
            try:
                os.setgid(gid)
                os.setuid(uid)
                pymic.trace(os.path.join(mine, "t.json")).start()
                status = 1
            except PermissionError as error:
                status = 0 if "cannot create a file" in str(error) else 2
            finally:
                os._exit(status)
        _, status = os.waitpid(child, 0)
        assert os.waitstatus_to_exitcode(status) == 0
    finally:
        shutil.rmtree(shared)


def test_an_unwritable_directory_fails_on_entry(tmp_path):
    if os.geteuid() == 0:
        pytest.skip("root writes any directory (the second-user test covers this as root)")
    locked = tmp_path / "locked"
    locked.mkdir(mode=0o555)
    with pytest.raises(PermissionError, match="cannot create a file"):
        with pymic.trace(locked / "trace.json"):
            pass


# ----------------------------------------------------- memory at the stop

def test_stopping_a_long_trace_streams_the_file(device, stream, tmp_path):
    kernel = device._array_kernel("pymic_array_fill_float64")
    target = stream.empty((1,))
    stream.sync()
    n = 30000
    path = tmp_path / "long.json"
    sites_before = len(pymic.tracing._engine.trace_sites())
    recording = pymic.trace(path, commands_per_stream=n + 16).start()
    for _ in range(n):
        stream.invoke(kernel, target, 0.0, 0)
    stream.sync()
    # One line of Python is one call site, however often it runs.
    assert len(pymic.tracing._engine.trace_sites()) - sites_before <= 2
    tracemalloc.start()
    try:
        recording.stop()
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    document = json.loads(path.read_text())
    slices = [e for e in document["traceEvents"] if e.get("cat") == "invoke"]
    assert len(slices) == n
    # Python memory at the stop does not grow with the events: a file
    # buffer and small tables, not a list of n dicts (about 1 KB each).
    assert peak < 4 * 2**20 + 64 * n, peak
    # The events are still there for whoever asks.
    assert len([e for e in recording.events if e.get("cat") == "invoke"]) == n


# ------------------------------------------------ call sites, ranges, MPI

def enqueue_from_a_helper(stream, kernels):
    stream.invoke(kernels.sleep_ms, 0)  # HELPER_LINE


def test_full_stacks_and_no_stacks(stream, kernels):
    with pymic.trace(stacks="full") as recording:
        enqueue_from_a_helper(stream, kernels)
        stream.sync()
    (command,) = [e for e in recording.events if e.get("cat") == "invoke"]
    here = os.path.basename(__file__)
    stack = command["args"]["stack"]
    assert stack[-1].endswith(f"{here}:{line_of('# HELPER_LINE')} in enqueue_from_a_helper")
    assert any(f"in {test_full_stacks_and_no_stacks.__name__}" in frame for frame in stack)
    assert command["args"]["site"] == stack[-1].rsplit(" in ", 1)[0]
    with pymic.trace(stacks="none") as recording:
        enqueue_from_a_helper(stream, kernels)
        stream.sync()
    assert not any("site" in e.get("args", {}) for e in recording.events)
    with pytest.raises(ValueError, match="stacks"):
        pymic.trace(stacks="deep")


def test_trace_range_on_the_host_track(stream, kernels):
    with pymic.trace_range("before the trace"):
        pass
    main = threading.main_thread().native_id
    with pymic.trace() as recording:
        with pymic.trace_range("step 42"):
            with pymic.trace_range("inner"):  # INNER_RANGE
                stream.invoke(kernels.sleep_ms, 1)
                stream.sync()

        def worker():
            with pymic.trace_range("worker"):
                pass
        thread = threading.Thread(target=worker)
        thread.start()
        thread.join()
    events = validate_trace_event_format({"traceEvents": recording.events})
    ranges = {e["name"]: e for e in events if e.get("cat") == "range"}
    assert set(ranges) == {"step 42", "inner", "worker"}
    outer, inner = ranges["step 42"], ranges["inner"]
    host = pymic.tracing.host_pid()
    assert (outer["pid"], outer["tid"]) == (inner["pid"], inner["tid"]) == (host, main)
    assert (ranges["worker"]["pid"], ranges["worker"]["tid"]) == (host, thread.native_id)
    assert outer["ts"] <= inner["ts"] and inner["ts"] + inner["dur"] <= outer["ts"] + outer["dur"]
    (sleep,) = [e for e in events if e.get("name") == "sleep_ms" and e["ph"] == "X"]
    assert inner["ts"] <= sleep["ts"] and sleep["ts"] + sleep["dur"] <= inner["ts"] + inner["dur"]
    assert inner["args"]["site"].endswith(f":{line_of('# INNER_RANGE')}")
    with pytest.raises(TypeError):
        pymic.trace_range(42)


def test_rank_and_pid_in_the_path(tmp_path, monkeypatch):
    for name in ("OMPI_COMM_WORLD_RANK", "PMI_RANK", "PMIX_RANK", "MV2_COMM_WORLD_RANK",
                 "SLURM_PROCID", "SLURM_STEP_TASKS_PER_NODE"):
        monkeypatch.delenv(name, raising=False)
    with pymic.trace(tmp_path / "t-{rank}-{pid}.json") as recording:
        pass
    assert recording.path == str(tmp_path / f"t-0-{os.getpid()}.json")
    monkeypatch.setenv("PMI_RANK", "3")
    with pymic.trace(tmp_path / "t.json") as recording:  # one file per rank
        pass
    assert recording.path == str(tmp_path / "t.rank3.json")
    document = json.loads((tmp_path / "t.rank3.json").read_text())
    assert document["otherData"]["rank"] == 3 and document["otherData"]["pid"] == os.getpid()
    with pymic.trace(tmp_path / "r{rank}.json") as recording:
        pass
    assert recording.path == str(tmp_path / "r3.json")
    monkeypatch.delenv("PMI_RANK")
    monkeypatch.setenv("SLURM_PROCID", "5")  # a batch script, not an srun task
    assert pymic.tracing.mpi_rank() is None
    monkeypatch.setenv("SLURM_STEP_TASKS_PER_NODE", "2(x3)")
    assert pymic.tracing.mpi_rank() == 5


TEXT_SCRIPT = """\
import numpy, pymic
library = pymic.devices[0].load_source(open("kernel.c").read())
stream = pymic.devices[0].get_default_stream()

def step():
    stream.invoke(library.add_one, numpy.zeros(8), 8)

step()
with pymic.trace_range("phase"):
    stream.invoke(library.sleep_ms, 1)
    stream.sync()
print("done")
"""


def run_text_trace(tmp_path, stacks):
    (tmp_path / "kernel.c").write_text(HANDSHAKE_SOURCE)
    script = tmp_path / "app.py"
    script.write_text(TEXT_SCRIPT)
    env = dict(os.environ, PYMIC_TRACE="1", PYMIC_CACHE_DIR=str(tmp_path / "cache"))
    if stacks is not None:
        env["PYMIC_TRACE_STACKS"] = stacks
    return str(script), subprocess.run([sys.executable, str(script)], capture_output=True,
                                       text=True, env=env, timeout=300, cwd=tmp_path)


def test_pymic_trace_1_prints_the_records_with_their_call_sites(tmp_path):
    script, result = run_text_trace(tmp_path, None)
    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    assert lines[0] == "done" and lines[1].startswith("pymic trace of pid")
    assert not (tmp_path / "1").exists()
    (add_one,) = [line for line in lines if " add_one on device 0 stream" in line]
    assert add_one.endswith(f"@ {script}:6")
    assert [line for line in lines if " h2d on device 0" in line][0].endswith(f"@ {script}:6")
    (sync,) = [line for line in lines if "host: sync stream" in line and line.endswith(":11")]
    assert "MainThread" in sync
    (phase,) = [line for line in lines if "range 'phase'" in line]
    assert phase.endswith(f"@ {script}:9")
    starts = [float(line.split()[0]) for line in lines[3:] if line.split()]
    assert starts == sorted(starts)


def test_pymic_trace_stacks_full_and_none(tmp_path):
    script, result = run_text_trace(tmp_path, "full")
    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    at = next(i for i, line in enumerate(lines) if " add_one on device 0 stream" in line)
    assert lines[at + 1].strip() == f'File "{script}", line 8, in <module>'
    assert lines[at + 2].strip() == f'File "{script}", line 6, in step'
    script, result = run_text_trace(tmp_path, "none")
    assert result.returncode == 0, result.stderr
    assert "@" not in result.stdout and " add_one on device 0" in result.stdout
    script, result = run_text_trace(tmp_path, "everything")
    assert result.returncode != 0
    assert "PYMIC_TRACE_STACKS='everything'" in result.stderr


def test_pymic_trace_under_mpirun_writes_one_file_per_rank(tmp_path, kernels):
    mpirun = shutil.which("mpirun")
    if mpirun is None:
        pytest.skip("no MPI launcher (mpirun) on PATH; test_cli covers the rank variables")
    version = subprocess.run([mpirun, "--version"], capture_output=True, text=True).stdout
    command, env = [mpirun, "-np", "2"], {}
    if "Open MPI" in version or "OpenRTE" in version:
        command += ["--oversubscribe", "--bind-to", "none"]
        env = {"OMPI_ALLOW_RUN_AS_ROOT": "1", "OMPI_ALLOW_RUN_AS_ROOT_CONFIRM": "1"}
    (tmp_path / "kernel.c").write_text(HANDSHAKE_SOURCE)
    script = tmp_path / "rank.py"
    script.write_text(
        "import os, pymic\n"
        "library = pymic.devices[0].load_source(open('kernel.c').read())\n"
        "stream = pymic.devices[0].get_default_stream()\n"
        "stream.invoke(library.sleep_ms, 0)\n"
        "stream.sync()\n"
        # One write per rank: mpirun forwards the ranks' output as it comes,
        # and print() under PYTHONUNBUFFERED writes the line and its end apart.
        "os.write(1, f'{os.getpid()}\\n'.encode())\n")
    env.update(PYMIC_TRACE=str(tmp_path / "run.json"), PYMIC_CACHE_DIR=str(tmp_path / "cache"))
    result = subprocess.run([*command, sys.executable, str(script)], capture_output=True,
                            text=True, timeout=300, cwd=tmp_path, env=dict(os.environ, **env))
    assert result.returncode == 0, result.stdout + result.stderr
    pids = sorted(int(line) for line in result.stdout.split())
    assert not (tmp_path / "run.json").exists()
    documents = [json.loads((tmp_path / f"run.rank{rank}.json").read_text()) for rank in (0, 1)]
    assert [d["otherData"]["rank"] for d in documents] == [0, 1]
    assert sorted(d["otherData"]["pid"] for d in documents) == pids
    for document in documents:
        events = validate_trace_event_format(document)
        assert [e["name"] for e in events if e.get("cat") == "invoke"] == ["sleep_ms"]
