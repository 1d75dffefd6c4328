"""data_transfers: the low-level memory API of a stream.

Allocates raw device memory, moves parts of host arrays in and out with byte
offsets, copies between device buffers, runs a kernel on a block in the
middle of an allocation and frees everything.  This is the layer the
high-level OffloadArray is built on, and what frameworks such as PyFR use.
"""

import os
import sys

import numpy as np

import pymic as mic

# The kernel library is built beside this script (make -C examples); it is
# loaded from there, so the script runs from any working directory.
HERE = os.path.dirname(os.path.abspath(__file__))

device = mic.devices[0]
library = device.load_library(os.path.join(HERE, "libdata_transfers.so"))
stream = device.get_default_stream()

itemsize = np.dtype(np.float64).itemsize
count = 16
source = np.arange(count, dtype=np.float64)
nbytes = source.nbytes

# Two device buffers of 16 doubles each (allocation is synchronous).
device_a = stream.allocate_device_memory(nbytes)
device_b = stream.allocate_device_memory(nbytes)
print("device buffer A at", hex(stream.translate_device_pointer(device_a)))
print("device buffer B at", hex(stream.translate_device_pointer(device_b)))

# Whole array to A; the host pointer is the array's raw address.
stream.transfer_host2device(source.ctypes.data, device_a, nbytes)

# B: zero it, then copy elements 4..11 of A into B at element 2.
zeros = np.zeros(count)
stream.transfer_host2device(zeros.ctypes.data, device_b, nbytes)
stream.transfer_device2device(device_a, device_b, 8 * itemsize,
                              offset_device_src=4 * itemsize,
                              offset_device_dst=2 * itemsize)

# The kernel adds 100 to four elements in the middle of B: hand it a
# pointer into the buffer by copying the block out, working on it and
# copying it back, all with offsets.
block = stream.allocate_device_memory(4 * itemsize)
stream.transfer_device2device(device_b, block, 4 * itemsize, offset_device_src=6 * itemsize)
stream.invoke(library.add_constant, block, 4, 100.0)
stream.transfer_device2device(block, device_b, 4 * itemsize, offset_device_dst=6 * itemsize)

# Bring B back in two halves, the second half first, each to its place.
result = np.full(count, -1.0)
half = nbytes // 2
stream.transfer_device2host(device_b, result.ctypes.data, half,
                            offset_device=half, offset_host=half)
stream.transfer_device2host(device_b, result.ctypes.data, half)

# Frees are ordered in the stream like everything else.
for pointer in (block, device_a, device_b):
    stream.deallocate_device_memory(pointer)
stream.sync()

expected = np.zeros(count)
expected[2:10] = source[4:12]
expected[6:10] += 100.0
print("source:  ", source)
print("result:  ", result)
print("expected:", expected)
matches = np.array_equal(result, expected)
print("result matches NumPy:", matches)
sys.exit(0 if matches else 1)
