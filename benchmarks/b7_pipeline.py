"""B7: chunks pipelined through two streams (h2d -> kernel -> d2h) vs one.

Every chunk is copied to the device, run through a single-threaded kernel
with real arithmetic (passes of a degree-8 polynomial per element), and
copied back.  Two workloads: a compute-bound one (enough passes that the
kernel outlasts the copies) and a memory-bound one (a single pass), since
only the first leaves a core idle for the second stream to use.
With one stream the stages run back to back; with two, chunk i goes to
stream i % 2, so one stream's copies can overlap the other's kernel.  Events
recorded around every stage give the timeline: each bar is the span between
two events, relative to an origin event that both streams wait for.
"""

import numpy as np

import targets
from context import pymic_default_stream
from timing import interleave, perf_ns, summarize

NAME = "two-stream pipeline"
STAGES = ("h2d", "kernel", "d2h")
COEFFICIENTS = (0.5, -0.25, 0.125, -0.0625, 0.03125, -0.015625, 0.0078125, -0.00390625,
                0.001953125)


#: Polynomial passes per element: (compute-bound, memory-bound).
ROUNDS = (8, 1)


def _expected(values, rounds):
    """The kernel's polynomial passes in NumPy (Horner's rule, same order)."""
    for _ in range(rounds):
        result = np.full_like(values, COEFFICIENTS[8])
        for coefficient in COEFFICIENTS[7::-1]:
            result = result * values + coefficient
        values = result
    return values


class Pipeline:
    """Host input/output arrays, device chunk buffers and the streams."""

    def __init__(self, device, kernel, chunk_elements, chunks):
        self.kernel = kernel
        self.rounds = 1
        self.chunk_elements = chunk_elements
        self.chunk_bytes = chunk_elements * 8
        self.chunks = chunks
        self.source = np.random.default_rng(7).uniform(-1.0, 1.0, chunk_elements * chunks)
        self.result = np.empty_like(self.source)
        self.result.fill(0.0)
        self.streams = [device.create_stream(), device.create_stream()]
        self.buffers = [stream.allocate_device_memory(self.chunk_bytes) for stream in self.streams]

    def run(self, stream_count):
        """Push every chunk through `stream_count` streams; time and trace it.

        Parameters
        ----------
        stream_count : {1, 2}
            How many streams share the chunks (round-robin).

        Returns
        -------
        tuple
            ``(seconds, spans)``: wall time of the whole pipeline and one
            dict per stage with ``stream``, ``chunk``, ``stage``, ``start``,
            ``end`` in seconds from the origin event.
        """
        streams = self.streams[:stream_count]
        source_address, result_address = self.source.ctypes.data, self.result.ctypes.data
        start = perf_ns()
        origin = streams[0].record_event()
        for stream in streams[1:]:
            stream.wait_event(origin)
        marks = []
        for chunk in range(self.chunks):
            index = chunk % stream_count
            stream, buffer = streams[index], self.buffers[index]
            offset = chunk * self.chunk_bytes
            events = [stream.record_event()]
            stream.transfer_host2device(source_address, buffer, self.chunk_bytes,
                                        offset_host=offset)
            events.append(stream.record_event())
            stream.invoke(self.kernel, buffer, self.chunk_elements, self.rounds)
            events.append(stream.record_event())
            stream.transfer_device2host(buffer, result_address, self.chunk_bytes,
                                        offset_host=offset)
            events.append(stream.record_event())
            marks.append((index, chunk, events))
        for stream in streams:
            stream.sync()
        seconds = (perf_ns() - start) / 1e9
        spans = [{"stream": index, "chunk": chunk, "stage": stage,
                  "start": origin.elapsed(events[position]),
                  "end": origin.elapsed(events[position + 1])}
                 for index, chunk, events in marks
                 for position, stage in enumerate(STAGES)]
        return seconds, spans


def overlap_seconds(spans):
    """Time during which both streams were executing some stage.

    Parameters
    ----------
    spans : list of dict
        Stage spans with ``stream``, ``start``, ``end``.

    Returns
    -------
    float
        Seconds of the union of stream 0's spans that intersect the union of
        stream 1's spans.
    """
    def merged(stream):
        intervals = sorted((s["start"], s["end"]) for s in spans if s["stream"] == stream)
        union = []
        for begin, end in intervals:
            if union and begin <= union[-1][1]:
                union[-1][1] = max(union[-1][1], end)
            else:
                union.append([begin, end])
        return union

    total = 0.0
    for begin_a, end_a in merged(0):
        for begin_b, end_b in merged(1):
            total += max(0.0, min(end_a, end_b) - max(begin_a, begin_b))
    return total


def run(context):
    """Run B7: speed-up of two streams over one, with stage timelines.

    Parameters
    ----------
    context : Context
        Run options.

    Returns
    -------
    dict
        ``figures`` (seconds per mode, speed-up, spans of the last run of
        each mode, overlap), ``tables`` and ``targets``.
    """
    _, device, _, library = pymic_default_stream(context)
    chunk_mib = context.pick(16, 4)
    chunks = context.pick(12, 6)
    pipeline = Pipeline(device, library.bench_polynomial, chunk_mib * 2**20 // 8, chunks)
    measured = {rounds: _measure(context, pipeline, rounds) for rounds in ROUNDS}
    rows = [targets.reported(
        "B7", f"two streams vs one, {chunks} chunks of {chunk_mib} MiB, "
              f"{kind} kernel ({rounds} polynomial pass{'es' if rounds > 1 else ''}): speed-up",
        f"two streams {m['seconds']['two_streams']['median'] * 1e3:.1f} ms",
        f"one stream {m['seconds']['one_stream']['median'] * 1e3:.1f} ms",
        f"{m['speedup']:.2f}×",
        note=f"streams overlapped for {m['overlap_seconds'] * 1e3:.1f} ms of the last "
             "two-stream run" + (" (see pipeline_timeline.png)" if rounds == ROUNDS[0] else ""))
        for (rounds, m), kind in zip(measured.items(), ("compute-bound", "memory-bound"))]
    # The timeline shows the compute-bound workload, where overlap can pay.
    figures = dict(measured[ROUNDS[0]], chunk_bytes=pipeline.chunk_bytes, chunks=chunks,
                   rounds=ROUNDS[0], memory_bound=measured[ROUNDS[1]])
    return {"figures": figures,
            "notes": ["The kernel is single-threaded on purpose: one chunk does not fill "
                      "both cores, so the second stream can use the other one.",
                      "With one polynomial pass the kernel takes about as long as one copy "
                      "and the copies already use both cores' memory bandwidth, so a second "
                      "stream has little to overlap with; with more passes per byte it does."],
            "targets": rows}


def _measure(context, pipeline, rounds):
    """Time one and two streams on `rounds` passes per element, interleaved."""
    pipeline.rounds = rounds
    traces = {}

    def sample(stream_count):
        seconds, traces[stream_count] = pipeline.run(stream_count)
        return [seconds]

    sample(1), sample(2)  # warm-up: first touch of device buffers
    if not np.allclose(pipeline.result, _expected(pipeline.source, rounds),
                       rtol=1e-12, atol=1e-12):
        raise AssertionError("pipeline output differs from the polynomial computed by NumPy")
    samples = interleave({"one_stream": lambda: sample(1), "two_streams": lambda: sample(2)},
                         context.pick(9, 2))
    stats = {name: summarize(values) for name, values in samples.items()}
    return {"seconds": stats,
            "speedup": stats["one_stream"]["median"] / stats["two_streams"]["median"],
            "overlap_seconds": overlap_seconds(traces[2]),
            "spans": {"one_stream": traces[1], "two_streams": traces[2]}}
