"""compile_and_trace: compile kernels from a string, trace a two-stream run.

The kernels are C source in this script.  ``device.load_source`` compiles
them with the system C compiler the first time and keeps the shared object
in pymic's cache, so the next run starts at once.  The work then runs under
``pymic.trace``: the data is cut into chunks, and two streams take turns
(even chunks on one, odd on the other), each copying its chunk in, running
both stages and copying it back.  The streams run side by side; the trace
file shows each command on its stream's track.  Open it in
https://ui.perfetto.dev or summarise it with
``python -m pymic trace-summary FILE``.

usage: python compile_and_trace.py [TRACE_FILE]
"""

import os
import sys
import tempfile
import time

import numpy as np

import pymic

SOURCE = r"""
#include <pymic_kernel.h>

/* Stage 1: x[i] = sqrt(x[i]) by Newton steps (deliberately a little
 * expensive, so that the streams' overlap shows). */
PYMIC_KERNEL void stage_sqrt(double *x, const int64_t *n)
{
    for (int64_t i = 0; i < *n; i++) {
        double value = x[i], root = value > 1.0 ? value / 2.0 : 1.0;
        for (int step = 0; step < 30; step++)
            root = 0.5 * (root + value / root);
        x[i] = root;
    }
}

/* Stage 2: x[i] = scale * x[i] + offset. */
PYMIC_KERNEL void stage_affine(double *x, const int64_t *n, const double *scale,
                               const double *offset)
{
    for (int64_t i = 0; i < *n; i++)
        x[i] = *scale * x[i] + *offset;
}
"""

trace_path = (sys.argv[1] if len(sys.argv) > 1
              else os.path.join(tempfile.gettempdir(), "pymic_compile_and_trace.json"))

device = pymic.devices[0]
start = time.perf_counter()
library = device.load_source(SOURCE)
print(f"load_source: {(time.perf_counter() - start) * 1e3:.1f} ms "
      f"(cached in {os.path.dirname(library.path)})")
start = time.perf_counter()
device.load_source(SOURCE)
print(f"load_source again: {(time.perf_counter() - start) * 1e3:.2f} ms (a cache hit)")

streams = [device.create_stream(), device.create_stream()]
chunks, chunk_size = 8, 1 << 16
data = np.random.default_rng(3).uniform(1.0, 1000.0, chunks * chunk_size)
expected = 3.0 * np.sqrt(data) + 1.0
result = data.copy()

with pymic.trace(trace_path) as recording:
    pending = []
    for index in range(chunks):
        stream = streams[index % 2]
        # A view of `result`: update_host writes straight into place.
        chunk = result[index * chunk_size:(index + 1) * chunk_size]
        offl = stream.bind(chunk)
        stream.invoke(library.stage_sqrt, offl, chunk_size)
        stream.invoke(library.stage_affine, offl, chunk_size, 3.0, 1.0)
        offl.update_host()
        pending.append(offl)  # keep the device memory until the stream is done
    for stream in streams:
        stream.sync()

summary = pymic.tracing.summarize(recording.events)
print(f"trace written to {trace_path} ({len(recording.events)} events)")
for name in ("stage_sqrt", "stage_affine", "h2d", "d2h"):
    entry = summary["kernels"][name]
    print(f"  {name:12} {entry['count']:3d} x, mean {entry['mean_us']:8.1f} us")
print(f"  host waited {summary['wait_total_us'] / 1000:.2f} ms in syncs")

# How long both streams were busy at the same time, from the trace.
def busy(track):
    return sorted((e["ts"], e["ts"] + e["dur"]) for e in recording.events
                  if e["ph"] == "X" and e.get("cat") != "wait"
                  and e["tid"] == pymic.tracing._engine.trace_stream_number(track))

both = sum(max(0.0, min(a_end, b_end) - max(a_start, b_start))
           for a_start, a_end in busy(streams[0]) for b_start, b_end in busy(streams[1]))
print(f"  the two streams ran side by side for {both / 1000:.2f} ms")

matches = np.allclose(result, expected)
print("result matches NumPy:", matches)
sys.exit(0 if matches else 1)
