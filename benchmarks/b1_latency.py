"""B1: latency of an empty-kernel invoke + sync, beside three peers.

Contenders, all calling the same empty C function from the same .so:
pymic (invoke + sync on the default stream), a direct ctypes call, a
ThreadPoolExecutor(max_workers=1) round trip of that ctypes call, and an empty
OpenCL kernel enqueue + finish on PoCL.  Each call is timed on its own; the
contenders alternate in blocks over several rounds.

One more pymic row: the same invoke followed by a device-wide sync
(``device.sync()``) instead of the stream's, judged against the stream
sync (a device sync looks only at the streams that have work).
"""

import ctypes
from concurrent.futures import ThreadPoolExecutor

import targets
from context import pymic_default_stream
from machine import ThreadPlacement, placement_note
from opencl_peer import OpenCLPeer
from timing import Unavailable, gc_paused, interleave, summarize, time_each

NAME = "empty-kernel invoke + sync latency"
WARMUP = 500


def _contenders(context):
    """Build the operations to time and the reasons of peers that cannot run."""
    placement = ThreadPlacement()
    _, device, stream, library = pymic_default_stream(context)
    kernel = library.bench_empty
    stream.invoke(kernel)
    stream.sync()
    placement.track()  # pymic's threads only, not the peers' started below
    direct = ctypes.CDLL(context.kernel_library("bench_kernels")).bench_empty
    direct.argtypes, direct.restype = [], None
    pool = ThreadPoolExecutor(max_workers=1)

    def pymic_invoke_sync():
        stream.invoke(kernel)
        stream.sync()

    def pymic_invoke_device_sync():
        stream.invoke(kernel)
        device.sync()

    operations = {
        "pymic": pymic_invoke_sync,
        "pymic_device_sync": pymic_invoke_device_sync,
        "ctypes": direct,
        "threadpool": lambda: pool.submit(direct).result(),
    }
    unavailable = {}
    try:
        opencl = OpenCLPeer()
        operations["pocl"] = opencl.empty_kernel_and_finish
        unavailable["pocl_info"] = opencl.describe()
    except Unavailable as error:
        unavailable["pocl"] = str(error)
    return operations, unavailable, pool, placement


def measure(context):
    """Time every contender; return per-contender summaries in microseconds.

    Parameters
    ----------
    context : Context
        Run options.

    Returns
    -------
    tuple
        ``(summaries, unavailable)``: dict of name to summary (µs) and dict
        of unavailable peer names to reasons (plus ``pocl_info``).
    """
    operations, unavailable, pool, placement = _contenders(context)
    total = context.pick(12000, 1500)
    rounds = context.pick(20, 3)  # short blocks: drift spreads evenly over contenders
    with gc_paused():
        for operation in operations.values():
            time_each(operation, WARMUP)
        blocks = {name: (lambda op=op: time_each(op, total // rounds))
                  for name, op in operations.items()}
        samples = interleave(blocks, rounds)
    unavailable["thread_placement"] = placement.snapshot()
    pool.shutdown()
    return {name: summarize(values, 1e-3) for name, values in samples.items()}, unavailable


def _row(goal, pymic, peer_label, peer, comparison, threshold, invert=False):
    pymic_text = f"{pymic['median']:.2f} µs"
    if peer is None:
        return targets.check("B1", goal, pymic_text, f"{peer_label}: not run", None, comparison,
                             threshold)
    ratio = pymic["median"] / peer["median"] if invert else peer["median"] / pymic["median"]
    return targets.check("B1", goal, pymic_text, f"{peer_label} {peer['median']:.2f} µs",
                         ratio, comparison, threshold)


def _pocl_note(unavailable):
    info = unavailable.get("pocl_info")
    if not info:
        return []
    return [f"OpenCL peer: {info['platform_version']} on device '{info['device']}', "
            f"PyOpenCL {info['pyopencl']}."]


def run(context):
    """Run B1 and judge its targets.

    Parameters
    ----------
    context : Context
        Run options.

    Returns
    -------
    dict
        ``figures`` (summaries in µs, unavailable peers) and ``targets``.
    """
    summaries, unavailable = measure(context)
    pymic = summaries["pymic"]
    rows = [
        _row("≥ 20× faster than PoCL enqueue+finish", pymic, "PoCL",
             summaries.get("pocl"), ">=", 20.0),
        _row("≥ 40× faster than ThreadPoolExecutor", pymic, "ThreadPoolExecutor",
             summaries["threadpool"], ">=", 40.0),
        _row("stretch: ≤ 10× a direct ctypes call (pymic / ctypes)", pymic, "ctypes",
             summaries["ctypes"], "<=", 10.0, invert=True),
        _row("device sync ≤ 1.5× stream sync after one invoke (device / stream)",
             summaries["pymic_device_sync"], "stream sync", pymic, "<=", 1.5, invert=True),
    ]
    if "pocl" in unavailable:
        rows[0]["note"] = unavailable["pocl"]
    labels = {"pymic": "pymic invoke + sync",
              "pymic_device_sync": "pymic invoke + device.sync()",
              "ctypes": "direct ctypes call",
              "threadpool": "ThreadPoolExecutor submit().result()",
              "pocl": "PyOpenCL/PoCL enqueue + finish"}
    table = [[labels[name], f"{stat['median']:.2f}", f"{stat['p10']:.2f}", f"{stat['p90']:.2f}",
              stat["n"]] for name, stat in summaries.items()]
    if "pocl" in unavailable:
        table.append([labels["pocl"], "not run", "", "", unavailable["pocl"]])
    placement = unavailable.pop("thread_placement")
    return {"figures": {"latency_us": summaries, "unavailable": unavailable,
                        "thread_placement": placement},
            "tables": [{"title": "Latency per call (µs)",
                        "columns": ["contender", "median", "p10", "p90", "samples"],
                        "rows": table}],
            "notes": ["Each sample includes one perf_counter_ns pair (about 0.1 µs), "
                      "which is most of the direct ctypes figure.",
                      placement_note(placement)] + _pocl_note(unavailable),
            "targets": rows}
