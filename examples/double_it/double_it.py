"""double_it: the first pymic program.

Binds a NumPy array to the offload device, doubles it there with a C kernel
(double_it.c), brings the result back and checks it against NumPy.  Run it
from any directory after ``make -C examples``.
"""

import os
import sys

import numpy as np

import pymic as mic

# The kernel library is built beside this script (make -C examples); it is
# loaded from there, so the script runs from any working directory.
HERE = os.path.dirname(os.path.abspath(__file__))

# The library with the kernel is loaded on the device by its path.
device = mic.devices[0]
library = device.load_library(os.path.join(HERE, "libdouble_it.so"))

# Work goes to the device's default stream.
stream = device.get_default_stream()

# Some data on the host, bound to device memory (this copies it over).
a = np.arange(1.0, 33.0)
offl_a = stream.bind(a)

print("offloading to", device)
print("input:")
print(offl_a)

# Double it on the device, then copy the result back into `a`.
stream.invoke(library.doubleit_kernel, offl_a, offl_a.size)
offl_a.update_host()
stream.sync()

print("output:")
print(offl_a)

matches = np.array_equal(a, 2.0 * np.arange(1.0, 33.0))
print("result matches NumPy:", matches)
sys.exit(0 if matches else 1)
