"""B6: dgemm through an offloaded kernel calling cblas_dgemm, beside numpy.dot.

Two pymic figures: kernel-only (A, B, C bound as OffloadArrays; invoke +
sync) and with transfers (the ndarrays passed to invoke: copy-in, kernel,
copy-out).  NumPy's figure is numpy.dot(A, B).  OpenBLAS worker threads spin
for a while after a call, so the contenders are separated by a short pause
that keeps one BLAS pool's spinning out of the other's timing.
"""

import time

import numpy as np

import targets
from context import pymic_default_stream
from timing import interleave, perf_ns, summarize

NAME = "dgemm kernel vs numpy.dot"
SETTLE_SECONDS = 0.2
ROUNDS = {512: 7, 1024: 5, 2048: 3, 4096: 2}


def _blas_info():
    try:
        from threadpoolctl import threadpool_info
    except ImportError as error:
        return [{"filepath": "threadpoolctl missing", "version": str(error),
                 "architecture": "?", "num_threads": "?"}]
    return [{key: entry.get(key) for key in ("filepath", "version", "architecture",
                                              "num_threads", "threading_layer")}
            for entry in threadpool_info() if entry.get("user_api") == "blas"]


def _timed(operation):
    def sample():
        time.sleep(SETTLE_SECONDS)
        start = perf_ns()
        operation()
        return [(perf_ns() - start) / 1e9]
    return sample


def _measure_order(stream, kernel, order, rounds):
    generator = np.random.default_rng(order)
    a, b = generator.random((order, order)), generator.random((order, order))
    c_transfers = np.zeros((order, order))
    device_a, device_b = stream.bind(a), stream.bind(b)
    device_c = stream.bind(np.zeros((order, order)))
    stream.sync()

    def kernel_only():
        stream.invoke(kernel, device_a, device_b, device_c, order)
        stream.sync()

    def with_transfers():
        stream.invoke(kernel, a, b, c_transfers, order)
        stream.sync()

    contenders = {"kernel_only": kernel_only, "with_transfers": with_transfers,
                  "numpy": lambda: np.dot(a, b)}
    if order <= 2048:
        for operation in contenders.values():
            operation()
    else:
        with_transfers()  # the one warm-up we afford at this size: results to verify
    expected = np.dot(a, b)
    if not np.allclose(c_transfers, expected, rtol=1e-10, atol=1e-8 * order):
        raise AssertionError(f"n={order}: kernel result differs from numpy.dot")
    samples = interleave({name: _timed(op) for name, op in contenders.items()}, rounds)
    flops = 2.0 * order ** 3
    return {name: {"seconds": summarize(values), "gflops": flops / summarize(values)["median"] / 1e9}
            for name, values in samples.items()}


def run(context):
    """Run B6 and judge its targets.

    Parameters
    ----------
    context : Context
        Run options.

    Returns
    -------
    dict
        ``figures`` (GFLOP/s per n and contender, BLAS libraries and cores),
        ``tables`` and ``targets``.
    """
    _, _, stream, library = pymic_default_stream(context, "bench_dgemm")
    kernel = library.bench_dgemm
    orders = context.pick([512, 1024, 2048, 4096], [512, 1024])
    results = {order: _measure_order(stream, kernel, order, context.pick(ROUNDS[order], 2))
               for order in orders}
    rows = []
    judged = [order for order in orders if order >= 2048] or orders[-1:]
    for order in judged:
        numpy_rate = results[order]["numpy"]["gflops"]
        for mode, threshold in (("kernel_only", 0.95), ("with_transfers", 0.85)):
            rate = results[order][mode]["gflops"]
            rows.append(targets.check(
                "B6", f"n={order} {mode.replace('_', ' ')} ≥ {threshold}× numpy.dot",
                f"{rate:.1f} GFLOP/s", f"numpy.dot {numpy_rate:.1f} GFLOP/s",
                rate / numpy_rate, ">=", threshold,
                note="" if order >= 2048 else "quick run: target applies at n ≥ 2048"))
    table = [[order] + [f"{results[order][name]['gflops']:.1f}"
                        for name in ("kernel_only", "with_transfers", "numpy")]
             + [f"{results[order]['kernel_only']['gflops'] / results[order]['numpy']['gflops']:.2f}×",
                f"{results[order]['with_transfers']['gflops'] / results[order]['numpy']['gflops']:.2f}×",
                results[order]["numpy"]["seconds"]["n"]]
             for order in orders]
    return {"figures": {"orders": orders, "results": {str(k): v for k, v in results.items()},
                        "blas": _blas_info()},
            "tables": [{"title": "dgemm GFLOP/s",
                        "columns": ["n", "kernel only", "with transfers", "numpy.dot",
                                    "kernel/numpy", "transfers/numpy", "samples"],
                        "rows": table}],
            "targets": rows}
