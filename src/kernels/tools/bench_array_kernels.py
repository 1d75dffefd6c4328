"""Time libpymic_array's kernels beside the same NumPy expressions (B5).

Calls the kernels directly through ctypes, on buffers that already exist
(device-resident data), and NumPy on the same data in the same run.  Prints
one line per dtype and op: the best time of each over the repeats and the
ratio NumPy / kernel (above 1 means the kernel is faster).

    OMP_NUM_THREADS=2 python bench_array_kernels.py [--library PATH] [-n N]

Two kernel figures are given: into an existing output buffer, and into a
freshly allocated one (page faults included, as when `a + b` makes a new
array whose memory was never touched).
"""

import argparse
import ctypes
import importlib.util
import os
import time

import numpy as np

DTYPES = {"float64": np.float64, "float32": np.float32, "complex128": np.complex128}


def default_library():
    """The libpymic_array.so of the installed pymic package."""
    spec = importlib.util.find_spec("pymic")
    for directory in spec.submodule_search_locations:
        return os.path.join(directory, "libpymic_array.so")


def best_times(actions, repeats):
    """The fastest of `repeats` runs of each action, in seconds.

    The actions take turns, so a burst of load from other processes on this
    shared machine hits all of them alike instead of one.
    """
    best = [float("inf")] * len(actions)
    for _ in range(repeats):
        for index, action in enumerate(actions):
            start = time.perf_counter()
            action()
            best[index] = min(best[index], time.perf_counter() - start)
    return best


def kernel_caller(lib, name, *buffers):
    """A zero-argument function calling kernel `name` on `buffers`."""
    kernel = getattr(lib, name)
    kernel.restype = None
    kernel.argtypes = [ctypes.c_void_p] * len(buffers)
    pointers = [b.ctypes.data for b in buffers]
    return lambda: kernel(*pointers)


def cases(suffix, n, rng):
    """(op, numpy expression, kernel name, operands, output dtype) per op."""
    dtype = DTYPES[suffix]
    real = np.dtype(dtype).kind != "c"
    a = rng.uniform(0.5, 4, n) + (0 if real else 1j * rng.uniform(0.5, 4, n))
    b = rng.uniform(-3, 3, n) + (0 if real else 1j * rng.uniform(-1, 1, n))
    a, b = a.astype(dtype), b.astype(dtype)
    value = np.array([1.5], dtype=dtype)
    abs_dtype = np.float64 if suffix == "complex128" else dtype
    return [
        ("a + b", lambda: a + b, "add", (a, b), dtype),
        ("a - b", lambda: a - b, "sub", (a, b), dtype),
        ("a * b", lambda: a * b, "mul", (a, b), dtype),
        ("a ** b", lambda: a ** b, "pow", (a, b), dtype),
        ("abs(a)", lambda: abs(a), "abs", (a,), abs_dtype),
        ("fill", lambda: a.fill(value[0]), "fill", (value,), dtype),
    ]


def main():
    """Parse the command line, time every case, print one row per case."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--library", default=None)
    parser.add_argument("-n", type=int, default=8 * 2**20)
    parser.add_argument("--repeats", type=int, default=10)
    options = parser.parse_args()
    lib = ctypes.CDLL(options.library or default_library())
    rng = np.random.default_rng(0)
    print(f"n = {options.n}, OMP_NUM_THREADS = {os.environ.get('OMP_NUM_THREADS')}")
    print(f"{'dtype':11} {'op':7} {'numpy ms':>9} {'kernel ms':>9} {'ratio':>6}"
          f" {'fresh ms':>9} {'ratio':>6}")
    for suffix in DTYPES:
        for op, numpy_expr, kernel, operands, out_dtype in cases(suffix, options.n, rng):
            name = f"pymic_array_{kernel}_{suffix}"
            n = np.array([options.n], dtype=np.int64)
            out = np.empty(options.n, dtype=out_dtype)
            if kernel == "fill":
                buffers = (out, operands[0], n)
            else:
                buffers = (*operands, out, n)
            warm = kernel_caller(lib, name, *buffers)

            def fresh():
                """The kernel into a new, never touched output array."""
                target = np.empty(options.n, dtype=out_dtype)
                fresh_buffers = ((target, operands[0], n) if kernel == "fill"
                                 else (*operands, target, n))
                kernel_caller(lib, name, *fresh_buffers)()

            warm()
            t_numpy, t_warm, t_fresh = best_times([numpy_expr, warm, fresh],
                                                  options.repeats)
            print(f"{suffix:11} {op:7} {t_numpy * 1e3:9.2f} {t_warm * 1e3:9.2f}"
                  f" {t_numpy / t_warm:6.2f} {t_fresh * 1e3:9.2f}"
                  f" {t_numpy / t_fresh:6.2f}", flush=True)


if __name__ == "__main__":
    main()
