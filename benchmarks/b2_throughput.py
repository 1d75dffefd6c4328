"""B2: enqueue throughput -- a burst of empty invokes, then one sync.

pymic's figure is judged against the absolute target (1,000,000 invokes/s);
a direct ctypes loop (the cost of the Python call itself) and a burst of
ThreadPoolExecutor submissions are measured alongside for scale.
"""

import ctypes
from concurrent.futures import ThreadPoolExecutor, wait

import targets
from context import pymic_default_stream
from timing import gc_paused, interleave, perf_ns, summarize

NAME = "enqueue throughput"


def _pymic_burst(stream, kernel, count):
    invoke = stream.invoke
    start = perf_ns()
    for _ in range(count):
        invoke(kernel)
    stream.sync()
    return [count / ((perf_ns() - start) / 1e9)]


def _ctypes_burst(function, count):
    start = perf_ns()
    for _ in range(count):
        function()
    return [count / ((perf_ns() - start) / 1e9)]


def _pool_burst(pool, function, count):
    submit = pool.submit
    start = perf_ns()
    futures = [submit(function) for _ in range(count)]
    wait(futures)
    return [count / ((perf_ns() - start) / 1e9)]


def run(context):
    """Run B2 and judge its target.

    Parameters
    ----------
    context : Context
        Run options.

    Returns
    -------
    dict
        ``figures`` (rates in calls/s per contender) and ``targets``.
    """
    _, _, stream, library = pymic_default_stream(context)
    kernel = library.bench_empty
    direct = ctypes.CDLL(context.kernel_library("bench_kernels")).bench_empty
    direct.argtypes, direct.restype = [], None
    pool = ThreadPoolExecutor(max_workers=1)
    count = context.pick(100_000, 20_000)
    pool_count = count // 5  # a submit costs tens of µs: keep the run short
    rounds = context.pick(5, 2)
    with gc_paused():
        _pymic_burst(stream, kernel, count // 10)
        samples = interleave({
            "pymic": lambda: _pymic_burst(stream, kernel, count),
            "ctypes": lambda: _ctypes_burst(direct, count),
            "threadpool": lambda: _pool_burst(pool, direct, pool_count),
        }, rounds)
    pool.shutdown()
    rates = {name: summarize(values) for name, values in samples.items()}
    pymic_rate = rates["pymic"]["median"]
    row = targets.check(
        "B2", f"≥ 1,000,000 invokes/s ({count:,} invokes, then one sync)",
        f"{pymic_rate:,.0f} /s",
        f"ThreadPoolExecutor {rates['threadpool']['median']:,.0f} /s; "
        f"ctypes loop {rates['ctypes']['median']:,.0f} /s",
        pymic_rate, ">=", 1e6, value_text=f"{pymic_rate / 1e6:.2f} M/s",
        note="target is absolute; peers for scale")
    return {"figures": {"rates_per_s": rates, "invokes_per_burst": count,
                        "threadpool_submits_per_burst": pool_count},
            "targets": [row]}
