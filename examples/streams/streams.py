"""streams: a two-stream pipeline ordered by events.

The data is cut into chunks.  Stream "load" copies a chunk to the device and
runs stage 1 on it, then records an event.  Stream "finish" waits for that
event, runs stage 2 on the chunk and copies it back.  While "finish" works
on chunk i, "load" already works on chunk i+1: the streams overlap, and the
events keep each chunk's stages in order without blocking the host.
"""

import os
import sys
import time

import numpy as np

import pymic as mic

# The kernel library is built beside this script (make -C examples); it is
# loaded from there, so the script runs from any working directory.
HERE = os.path.dirname(os.path.abspath(__file__))

device = mic.devices[0]
library = device.load_library(os.path.join(HERE, "libstreams.so"))
load = device.create_stream()
finish = device.create_stream()

chunks = 8
chunk_size = 1 << 16
data = np.random.default_rng(3).uniform(1.0, 1000.0, chunks * chunk_size)
expected = 3.0 * np.sqrt(data) + 1.0
result = data.copy()

start = time.perf_counter()
begin = load.record_event()
pending = []
for index in range(chunks):
    # A view of `result`: update_host writes straight into the right place.
    chunk = result[index * chunk_size:(index + 1) * chunk_size]
    offl = load.bind(chunk)
    load.invoke(library.stage_sqrt, offl, chunk_size)
    stage1_done = load.record_event()

    finish.wait_event(stage1_done)
    offl.assign_stream(finish)
    finish.invoke(library.stage_affine, offl, chunk_size, 3.0, 1.0)
    offl.update_host()
    pending.append(offl)  # keep the device memory until the stream is done

end = finish.record_event()
finish.sync()
load.sync()
wall = time.perf_counter() - start

print(f"{chunks} chunks of {chunk_size} doubles through two streams")
print(f"device time between the first and last event: {begin.elapsed(end) * 1e3:.1f} ms")
print(f"host wall time: {wall * 1e3:.1f} ms")
print("first results:", result[:4])
matches = np.allclose(result, expected)
print("result matches NumPy:", matches)
sys.exit(0 if matches else 1)
