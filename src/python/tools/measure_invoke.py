"""Measure pymic's Python-level invoke cost (a developer tool, not a test).

Prints, for an empty kernel:
  * invoke + sync latency from Python, median of N warm iterations;
  * a direct ctypes call of the same C function (the floor);
  * throughput of M invokes followed by one sync.

Usage: python measure_invoke.py [iterations] [throughput_invokes]
"""

import ctypes
import os
import statistics
import subprocess
import sys
import tempfile
import time

import pymic

KERNEL_SOURCE = """
#include <pymic_kernel.h>
PYMIC_KERNEL void empty_kernel(void) {}
"""


def build_kernel(directory):
    """Compile the empty kernel into `directory`; return the .so path."""
    source = os.path.join(directory, "empty.c")
    library = os.path.join(directory, "libempty.so")
    with open(source, "w") as handle:
        handle.write(KERNEL_SOURCE)
    subprocess.run([os.environ.get("CC", "cc"), "-O2", "-shared", "-fPIC",
                    f"-I{pymic.get_include()}", "-o", library, source], check=True)
    return library


def median_ns(function, iterations):
    """Median wall time of one call of `function`, in nanoseconds."""
    samples = []
    clock = time.perf_counter_ns
    for _ in range(iterations):
        start = clock()
        function()
        samples.append(clock() - start)
    return statistics.median(samples)


def main():
    iterations = int(sys.argv[1]) if len(sys.argv) > 1 else 10000
    burst = int(sys.argv[2]) if len(sys.argv) > 2 else 100000
    with tempfile.TemporaryDirectory() as directory:
        path = build_kernel(directory)
        device = pymic.devices[0]
        library = device.load_library(path)
        stream = device.get_default_stream()
        kernel = library.empty_kernel
        invoke, sync = stream.invoke, stream.sync

        def invoke_and_sync():
            invoke(kernel)
            sync()

        direct = ctypes.CDLL(path).empty_kernel
        for _ in range(2000):  # warm up caches, the worker and the allocator
            invoke_and_sync()
            direct()
        latency = median_ns(invoke_and_sync, iterations)
        floor = median_ns(direct, iterations)

        best_rate = 0.0
        for _ in range(3):
            start = time.perf_counter()
            for _ in range(burst):
                invoke(kernel)
            sync()
            best_rate = max(best_rate, burst / (time.perf_counter() - start))

    print(f"invoke+sync latency (median of {iterations}): {latency / 1000:.3f} us")
    print(f"direct ctypes call  (median of {iterations}): {floor / 1000:.3f} us")
    print(f"ratio pymic / ctypes: {latency / floor:.1f}x")
    print(f"{burst} invokes + 1 sync: {best_rate / 1e6:.2f} M invokes/s (best of 3)")


if __name__ == "__main__":
    main()
