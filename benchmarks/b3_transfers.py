"""B3: low-level transfers (h2d, d2h, d2d) against numpy.copyto, by size.

Bandwidth counts the bytes moved in one direction over the time of a batch
of transfers plus one sync, per transfer.  numpy.copyto between two warm,
pre-faulted host arrays of the same size is the machine's memory bandwidth.
A second part times a 4 KiB transfer + sync one at a time, interleaved with
the empty invoke + sync of B1, to judge small-transfer latency.
"""

import numpy as np

import targets
from context import pymic_default_stream
from machine import ThreadPlacement, placement_note
from timing import gc_paused, interleave, summarize, time_block, time_each

NAME = "transfer bandwidth h2d / d2h / d2d"
KIB, MIB = 1024, 1024 * 1024
TARGET_FROM = 16 * MIB


def _prefaulted(nbytes, value):
    array = np.empty(nbytes, dtype=np.uint8)
    array.fill(value)  # touch every page now, not inside a timed copy
    return array


def _patterned(nbytes):
    """A pre-faulted array whose bytes vary, so a misplaced copy shows."""
    period = (np.arange(4093) % 251).astype(np.uint8)  # 4093 is prime: no page alignment
    return np.resize(period, nbytes)


def _batch_size(nbytes):
    """Transfers per timed batch: enough that small sizes are not all sync."""
    return max(1, min(64, (8 * MIB) // nbytes))


def _measure_size(stream, nbytes, samples_per_round, rounds):
    source = _patterned(nbytes)
    destination = _prefaulted(nbytes, 2)
    device_a = stream.allocate_device_memory(nbytes)
    device_b = stream.allocate_device_memory(nbytes)
    stream.transfer_host2device(source.ctypes.data, device_a, nbytes)
    stream.transfer_device2device(device_a, device_b, nbytes)
    stream.sync()
    batch = _batch_size(nbytes)
    host_source, host_destination = source.ctypes.data, destination.ctypes.data

    def batched(enqueue):
        def one_batch():
            for _ in range(batch):
                enqueue()
            stream.sync()
        return lambda: [time_block(one_batch) / batch for _ in range(samples_per_round)]

    def copyto_block():
        return [time_block(lambda: np.copyto(destination, source), batch)
                for _ in range(samples_per_round)]

    contenders = {
        "h2d": batched(lambda: stream.transfer_host2device(host_source, device_a, nbytes)),
        "d2h": batched(lambda: stream.transfer_device2host(device_a, host_destination, nbytes)),
        "d2d": batched(lambda: stream.transfer_device2device(device_a, device_b, nbytes)),
        "copyto": copyto_block,
    }
    for warm in contenders.values():
        warm()
    samples = interleave(contenders, rounds)
    destination.fill(0)  # copyto left the right bytes there: clear them first
    stream.transfer_device2host(device_b, host_destination, nbytes)
    stream.sync()
    if not np.array_equal(destination, source):
        raise AssertionError(f"{nbytes} B: data came back different after h2d, d2d, d2h")
    seconds = {name: summarize(values) for name, values in samples.items()}
    return {name: {"seconds": stat, "gb_per_s": nbytes / stat["median"] / 1e9}
            for name, stat in seconds.items()}


def _small_latency(stream, library, context):
    """Time 4 KiB h2d + sync, d2h + sync and empty invoke + sync one by one."""
    nbytes = 4 * KIB
    source, destination = _prefaulted(nbytes, 3), _prefaulted(nbytes, 4)
    device = stream.allocate_device_memory(nbytes)
    kernel = library.bench_empty
    # ndarray.ctypes builds a helper object per access (about a microsecond):
    # take the addresses once so only pymic's cost is timed.
    source_address, destination_address = source.ctypes.data, destination.ctypes.data

    def h2d():
        stream.transfer_host2device(source_address, device, nbytes)
        stream.sync()

    def d2h():
        stream.transfer_device2host(device, destination_address, nbytes)
        stream.sync()

    def invoke():
        stream.invoke(kernel)
        stream.sync()

    total, rounds = context.pick(10000, 1000), context.pick(10, 2)
    operations = {"h2d_4KiB": h2d, "d2h_4KiB": d2h, "empty_invoke": invoke}
    with gc_paused():
        for operation in operations.values():
            time_each(operation, 300)
        samples = interleave({name: (lambda op=op: time_each(op, total // rounds))
                              for name, op in operations.items()}, rounds)
    return {name: summarize(values, 1e-3) for name, values in samples.items()}


def _bandwidth_rows(sizes, bandwidth):
    rows = []
    for direction in ("h2d", "d2h", "d2d"):
        judged = [size for size in sizes if size >= TARGET_FROM]
        if not judged:
            continue
        ratios = {size: bandwidth[size][direction]["gb_per_s"] / bandwidth[size]["copyto"]["gb_per_s"]
                  for size in judged}
        worst = min(ratios, key=ratios.get)
        rows.append(targets.check(
            "B3", f"{direction} ≥ 0.9× copyto from 16 MiB up (worst size shown)",
            f"{bandwidth[worst][direction]['gb_per_s']:.2f} GB/s at {worst // MIB} MiB",
            f"copyto {bandwidth[worst]['copyto']['gb_per_s']:.2f} GB/s",
            ratios[worst], ">=", 0.9,
            note="ratios " + ", ".join(f"{size // MIB} MiB {ratio:.2f}×"
                                       for size, ratio in ratios.items())))
    return rows


def _latency_rows(latency):
    empty = latency["empty_invoke"]["median"]
    rows = []
    for name in ("h2d_4KiB", "d2h_4KiB"):
        value = latency[name]["median"]
        rows.append(targets.check(
            "B3", f"{name.replace('_', ' ')} + sync ≤ 2× empty invoke + sync",
            f"{value:.2f} µs", f"empty invoke + sync {empty:.2f} µs (same run)",
            value / empty, "<=", 2.0))
    return rows


def _size_label(nbytes):
    return f"{nbytes // MIB} MiB" if nbytes >= MIB else f"{nbytes // KIB} KiB"


def run(context):
    """Run B3 and judge its targets.

    Parameters
    ----------
    context : Context
        Run options.

    Returns
    -------
    dict
        ``figures`` (GB/s per size and direction, small-transfer latency),
        ``tables`` and ``targets``.
    """
    placement = ThreadPlacement()
    _, _, stream, library = pymic_default_stream(context)
    stream.invoke(library.bench_empty)
    stream.sync()
    placement.track()
    largest = context.pick(256 * MIB, 64 * MIB)
    sizes = []
    size = 4 * KIB
    while size <= largest:
        sizes.append(size)
        size *= 4
    bandwidth = {}
    for nbytes in sizes:
        samples = 5 if nbytes < 64 * MIB else 3
        bandwidth[nbytes] = _measure_size(stream, nbytes, context.pick(samples, 2),
                                          context.pick(3, 2))
    latency = _small_latency(stream, library, context)
    where = placement.snapshot()
    table_rows = [[_size_label(nbytes)]
                  + [f"{bandwidth[nbytes][name]['gb_per_s']:.2f}"
                     for name in ("h2d", "d2h", "d2d", "copyto")]
                  + [f"{bandwidth[nbytes][name]['gb_per_s'] / bandwidth[nbytes]['copyto']['gb_per_s']:.2f}×"
                     for name in ("h2d", "d2h", "d2d")]
                  for nbytes in sizes]
    latency_rows = [[name, f"{stat['median']:.2f}", f"{stat['p10']:.2f}", f"{stat['p90']:.2f}",
                     stat["n"]] for name, stat in latency.items()]
    return {
        "figures": {"sizes": sizes, "bandwidth": {str(k): v for k, v in bandwidth.items()},
                    "latency_us": latency, "thread_placement": where},
        "notes": [placement_note(where)],
        "tables": [
            {"title": "Bandwidth in GB/s (10^9 B/s, one direction counted) and ratio to copyto",
             "columns": ["size", "h2d", "d2h", "d2d", "copyto", "h2d/copyto", "d2h/copyto",
                         "d2d/copyto"], "rows": table_rows},
            {"title": "Small transfers, each timed with its sync (µs)",
             "columns": ["operation", "median", "p10", "p90", "samples"], "rows": latency_rows},
        ],
        "targets": _bandwidth_rows(sizes, bandwidth) + _latency_rows(latency),
    }
