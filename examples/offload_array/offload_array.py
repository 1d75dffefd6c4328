"""offload_array: NumPy-like arithmetic that runs on the offload device.

OffloadArray operators (+ - * ** abs, in-place forms, fill, reverse, reshape,
slice assignment) run on the device and keep their results there; only
update_host() brings data back.  A user kernel (offload_array.c) works on
the same device arrays in between.
"""

import os
import sys

import numpy as np

import pymic as mic

# The kernel library is built beside this script (make -C examples); it is
# loaded from there, so the script runs from any working directory.
HERE = os.path.dirname(os.path.abspath(__file__))

device = mic.devices[0]
library = device.load_library(os.path.join(HERE, "liboffload_array.so"))
stream = device.get_default_stream()

n = 10
x_host = np.linspace(0.0, 1.0, n)
y_host = np.arange(n, dtype=np.float64)

x = stream.bind(x_host)
y = stream.bind(y_host)

# Element-wise operators: each result is a new array on the device.
total = x + y
product = x * y
power = x ** 2.0
shifted = y - 1.5
magnitude = abs(shifted)

# In place, and mixed with a user kernel: y = 2*x + (y*3).
y *= 3.0
stream.invoke(library.axpy, x, y, n, 2.0)

# Creation, fill, reverse, reshape and slices.
ramp = stream.bind(np.arange(n, dtype=np.float64))
backwards = ramp.reverse()
grid = stream.zeros((2, 5))
grid.ravel()[2:7] = 4.0
ones = stream.ones(n)
ones[0:3] = x_host[:3]

results = {
    "x + y": (total, x_host + np.arange(n)),
    "x * y": (product, x_host * np.arange(n)),
    "x ** 2": (power, x_host ** 2.0),
    "abs(y - 1.5)": (magnitude, np.abs(np.arange(n) - 1.5)),
    "y*3 + 2*x": (y, np.arange(n) * 3.0 + 2.0 * x_host),
    "reverse": (backwards, np.arange(n, dtype=np.float64)[::-1]),
    "grid": (grid, np.array([[0, 0, 4, 4, 4], [4, 4, 0, 0, 0]], dtype=np.float64)),
    "ones[0:3] = x[:3]": (ones, np.concatenate([x_host[:3], np.ones(n - 3)])),
}

# Bring everything back with one sync for all the copies.
for offload, _ in results.values():
    offload.update_host()
stream.sync()

all_match = True
for name, (offload, expected) in results.items():
    matches = np.allclose(offload.array, expected)
    all_match &= matches
    print(f"{name:>18}: {np.array2string(offload.array.ravel(), precision=3)}"
          f"  {'ok' if matches else 'MISMATCH'}")

print("result matches NumPy:", all_match)
sys.exit(0 if all_match else 1)
