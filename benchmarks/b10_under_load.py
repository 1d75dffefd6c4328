"""B10: B1 and B9 while two background processes keep both cores busy.

The harness starts two busy-looping Python processes (plain ``while True``,
default priority), measures, and stops them.  B1 part: empty-kernel invoke
+ sync against a ThreadPoolExecutor round trip of the same ctypes call;
B9 part: the application step (sync after each kernel) against ctypes.
"""

import contextlib
import ctypes
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor

import targets
from app_loop import busy_loop_count, step_rows
from b9_app_loop import measure_size
from context import pymic_default_stream
from timing import gc_paused, interleave, summarize, time_each

NAME = "B1 and B9 under background load"
BACKGROUND_PROCESSES = 2
STEP_SIZE = 100_000
STEP_BOUND = 1.3


@contextlib.contextmanager
def background_load(count=BACKGROUND_PROCESSES):
    """Keep `count` busy-looping processes running inside the block.

    Parameters
    ----------
    count : int, optional
        Number of processes (one per core of the 2-core target machine).

    Yields
    ------
    list of subprocess.Popen
        The running processes; they are killed and reaped on exit.
    """
    processes = [subprocess.Popen([sys.executable, "-c", "while True: pass"])
                 for _ in range(count)]
    try:
        yield processes
    finally:
        for process in processes:
            process.kill()
        for process in processes:
            process.wait()


def _latency(context, stream, library):
    direct = ctypes.CDLL(context.kernel_library("bench_kernels")).bench_empty
    direct.argtypes, direct.restype = [], None
    pool = ThreadPoolExecutor(max_workers=1)
    kernel = library.bench_empty

    def pymic_invoke_sync():
        stream.invoke(kernel)
        stream.sync()

    operations = {"pymic": pymic_invoke_sync, "threadpool": lambda: pool.submit(direct).result(),
                  "ctypes": direct}
    total, rounds = context.pick(4000, 600), context.pick(20, 3)
    with gc_paused():
        for operation in operations.values():
            time_each(operation, 200)
        samples = interleave({name: (lambda op=op: time_each(op, total // rounds))
                              for name, op in operations.items()}, rounds)
    pool.shutdown()
    return {name: summarize(values, 1e-3) for name, values in samples.items()}


def latency_row(summaries):
    """The B1-under-load verdict: pymic invoke+sync ≤ ThreadPoolExecutor round trip.

    Parameters
    ----------
    summaries : dict
        Latency summaries (µs) with keys ``pymic`` and ``threadpool``.

    Returns
    -------
    dict
        Target row; the value is pymic's median over the pool's.
    """
    mine, peer = summaries["pymic"]["median"], summaries["threadpool"]["median"]
    return targets.check("B10", "under load: invoke + sync ≤ ThreadPoolExecutor round trip",
                         f"{mine:.2f} µs", f"ThreadPoolExecutor {peer:.2f} µs", mine / peer,
                         "<=", 1.0)


def run(context):
    """Run B10 and judge its targets.

    Parameters
    ----------
    context : Context
        Run options.

    Returns
    -------
    dict
        ``figures`` (latencies in µs, step times in µs), tables and ``targets``.
    """
    _, _, stream, empty_library = pymic_default_stream(context)
    work = busy_loop_count()  # calibrated on the quiet machine, like B9
    with background_load():
        latency = _latency(context, stream, empty_library)
        steps = measure_size(context, STEP_SIZE, work, with_once=False)
    rows = [latency_row(latency)] + step_rows("B10", f"under load, n = {STEP_SIZE:,}", steps,
                                              STEP_BOUND, None)
    table = [[name, f"{stat['median']:.2f}", f"{stat['p10']:.2f}", f"{stat['p90']:.2f}"]
             for name, stat in latency.items()]
    step_table = [[name, f"{stat['median']:.0f}", f"{stat['p10']:.0f}", f"{stat['p90']:.0f}"]
                  for name, stat in steps.items()]
    return {"figures": {"latency_us": latency, "step_us": steps,
                        "background_processes": BACKGROUND_PROCESSES},
            "tables": [{"title": "Latency per call under load (µs)",
                        "columns": ["contender", "median", "p10", "p90"], "rows": table},
                       {"title": f"µs per step under load (n = {STEP_SIZE:,})",
                        "columns": ["contender", "median", "p10", "p90"], "rows": step_table}],
            "notes": [f"{BACKGROUND_PROCESSES} busy-looping Python processes ran throughout."],
            "targets": rows}
