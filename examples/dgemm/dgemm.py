"""dgemm: matrix multiplication offloaded to a BLAS kernel, two ways.

First the naive offload: ``invoke`` with NumPy arrays copies them in and
out on every call.  Then the refined one: bind the matrices once, so the
kernel works on device-resident data and only C comes back.  Both are timed
against NumPy's own ``dot`` and checked against it.

Usage: python dgemm.py [n]   (square n x n matrices, default 1024)
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
library = device.load_library(os.path.join(HERE, "libdgemm.so"))
stream = device.get_default_stream()

m = n = k = int(sys.argv[1]) if len(sys.argv) > 1 else 1024
alpha = 1.2
beta = 0.8

rng = np.random.default_rng(10)
a = rng.random((m, k))
b = rng.random((k, n))
c = rng.random((m, n))
c_start = c.copy()

flops = 2.0 * m * n * k
print(f"dgemm of {m}x{k} by {k}x{n} matrices, alpha={alpha}, beta={beta}")

# The reference: NumPy on the host.
start = time.perf_counter()
expected = alpha * np.dot(a, b) + beta * c_start
numpy_time = time.perf_counter() - start
print(f"numpy.dot:                  {numpy_time:8.4f} s  {flops / numpy_time / 1e9:7.2f} GFLOP/s")

# 1. Naive offload: the arrays travel to the device and back with the call.
start = time.perf_counter()
stream.invoke(library.dgemm_kernel, a, b, c, m, n, k, alpha, beta)
stream.sync()
copy_time = time.perf_counter() - start
print(f"offload, copy-in/copy-out:  {copy_time:8.4f} s  {flops / copy_time / 1e9:7.2f} GFLOP/s")
naive_ok = np.allclose(c, expected)

# 2. Refined offload: bind once; only C comes back, after the kernel.
c[:] = c_start
offl_a = stream.bind(a)
offl_b = stream.bind(b)
offl_c = stream.bind(c)
stream.sync()
start = time.perf_counter()
stream.invoke(library.dgemm_kernel, offl_a, offl_b, offl_c, m, n, k, alpha, beta)
stream.sync()
kernel_time = time.perf_counter() - start
offl_c.update_host()
stream.sync()
print(f"offload, bound arrays:      {kernel_time:8.4f} s  {flops / kernel_time / 1e9:7.2f} GFLOP/s")
bound_ok = np.allclose(c, expected)

print("copy-in/copy-out result matches NumPy:", naive_ok)
print("bound-array result matches NumPy:", bound_ok)
sys.exit(0 if naive_ok and bound_ok else 1)
