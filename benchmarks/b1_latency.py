"""B1: latency of an empty-kernel invoke + sync, beside three peers.

Contenders, all calling the same empty C function from the same .so:
pymic (invoke + sync on the default stream), a direct ctypes call, a
ThreadPoolExecutor(max_workers=1) round trip of that ctypes call, and an empty
OpenCL kernel enqueue + finish on PoCL.  Each call is timed on its own; the
contenders alternate in blocks over several rounds.

It also shows what checking a declared kernel signature costs: the same
three-argument kernel (an OffloadArray and two ints) invoked from a
library whose kernels are undeclared and from a copy of it where the
kernel is declared, as invoke + sync and as the invoke call alone.

One more pymic row: the same invoke followed by a device-wide sync
(``device.sync()``) instead of the stream's, judged against the stream
sync (a device sync looks only at the streams that have work).
"""

import ctypes
import os
import shutil
import tempfile
from concurrent.futures import ThreadPoolExecutor

import targets
from context import pymic_default_stream
from machine import ThreadPlacement, placement_note
from opencl_peer import OpenCLPeer
from timing import Unavailable, gc_paused, interleave, perf_ns, summarize, time_each

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


SIGNATURE = "void bench_polynomial(double *values, const int64_t *count, const int64_t *rounds)"


def _enqueue_only(stream, kernel, args, count):
    """Nanoseconds of each of `count` invokes alone: the clock stops when
    invoke returns (the kernel enqueued), the sync after it is not timed."""
    invoke, sync, clock = stream.invoke, stream.sync, perf_ns
    samples = []
    for _ in range(count):
        start = clock()
        invoke(kernel, *args)
        samples.append(clock() - start)
        sync()
    return samples


def measure_signatures(context):
    """Invoke cost of a kernel with and without a declared signature.

    Parameters
    ----------
    context : Context
        Run options.

    Returns
    -------
    dict
        Summaries in microseconds: ``unchecked`` and ``declared`` (invoke +
        sync), ``unchecked_enqueue`` and ``declared_enqueue`` (the invoke
        call alone).
    """
    pymic, device, stream, library = pymic_default_stream(context)
    workdir = tempfile.mkdtemp(prefix="pymic-b1-")
    try:
        copy = os.path.join(workdir, "libbench_declared.so")
        shutil.copy(context.kernel_library("bench_kernels"), copy)
        declared_library = device.load_library(copy)
    finally:
        shutil.rmtree(workdir)  # the library stays mapped
    declared_library.declare(SIGNATURE)
    plain, declared = library.bench_polynomial, declared_library.bench_polynomial
    values = pymic.OffloadArray(4, "float64", stream=stream)
    args = (values, 0, 0)  # count 0: the kernel does nothing

    def call(kernel):
        def invoke_sync():
            stream.invoke(kernel, *args)
            stream.sync()
        return invoke_sync

    total = context.pick(12000, 1500)
    rounds = context.pick(20, 3)
    with gc_paused():
        for kernel in (plain, declared):
            time_each(call(kernel), WARMUP)
        samples = interleave({
            "unchecked": lambda: time_each(call(plain), total // rounds),
            "declared": lambda: time_each(call(declared), total // rounds),
            "unchecked_enqueue": lambda: _enqueue_only(stream, plain, args, total // rounds),
            "declared_enqueue": lambda: _enqueue_only(stream, declared, args, total // rounds),
        }, rounds)
    return {name: summarize(values, 1e-3) for name, values in samples.items()}


def _signature_rows(signatures):
    unchecked, declared = signatures["unchecked"], signatures["declared"]
    enqueue = (signatures["declared_enqueue"]["median"]
               - signatures["unchecked_enqueue"]["median"])
    latency = declared["median"] - unchecked["median"]
    return [
        targets.check(
            "B1", "signature check < 0.1 µs per invoke (declared − undeclared kernel, "
            "3 arguments; the invoke call alone)",
            f"{signatures['declared_enqueue']['median']:.3f} µs",
            f"undeclared {signatures['unchecked_enqueue']['median']:.3f} µs", enqueue, "<", 0.1,
            value_text=f"{enqueue * 1000:+.0f} ns"),
        targets.reported(
            "B1", "invoke + sync of a declared kernel (3 arguments) beside the undeclared one",
            f"{declared['median']:.2f} µs", f"undeclared {unchecked['median']:.2f} µs",
            f"{latency * 1000:+.0f} ns",
            note="the difference of two medians of round trips; the row above "
                 "isolates the check"),
    ]


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
    signatures = measure_signatures(context)
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
    rows += _signature_rows(signatures)
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
    signature_labels = {
        "unchecked": "invoke + sync, undeclared kernel (3 arguments)",
        "declared": "invoke + sync, declared kernel (3 arguments)",
        "unchecked_enqueue": "invoke alone (enqueue), undeclared kernel",
        "declared_enqueue": "invoke alone (enqueue), declared kernel"}
    signature_table = [[signature_labels[name], f"{stat['median']:.3f}", f"{stat['p10']:.3f}",
                        f"{stat['p90']:.3f}", stat["n"]] for name, stat in signatures.items()]
    return {"figures": {"latency_us": summaries, "unavailable": unavailable,
                        "thread_placement": placement, "signature_check_us": signatures},
            "tables": [{"title": "Latency per call (µs)",
                        "columns": ["contender", "median", "p10", "p90", "samples"],
                        "rows": table},
                       {"title": "Cost of a declared signature (µs)",
                        "columns": ["contender", "median", "p10", "p90", "samples"],
                        "rows": signature_table}],
            "notes": ["Each sample includes one perf_counter_ns pair (about 0.1 µs), "
                      "which is most of the direct ctypes figure.",
                      placement_note(placement)] + _pocl_note(unavailable),
            "targets": rows}
