"""B11: the process device (PYMIC_DEVICES=proc) beside the host device.

Three figures, each as a ratio against a peer measured in the same run:
empty-kernel invoke + sync on the process device against the same on the
host device (interleaved blocks); h2d and d2h transfers into the shared
arena against numpy.copyto of the same size (16 MiB and up); and the dgemm
kernel of B6 running in the device process against numpy.dot.

pymic reads PYMIC_DEVICES once, so the measurements run in a child
interpreter started with ``PYMIC_DEVICES="host;proc"`` (device 0 on the
host, device 1 a process device, both on every core).
"""

import json
import os
import subprocess
import sys
import tempfile
import time

import numpy as np

import targets
from timing import gc_paused, interleave, perf_ns, summarize, time_block, time_each

NAME = "process device: latency, transfers, dgemm"
MIB = 1024 * 1024
WARMUP = 500


def _latency(pymic, library_path, context):
    streams, kernels = {}, {}
    for name, device in (("host", pymic.devices[0]), ("proc", pymic.devices[1])):
        streams[name] = device.get_default_stream()
        kernels[name] = device.load_library(library_path).bench_empty

    def invoke_sync(name):
        stream, kernel = streams[name], kernels[name]

        def call():
            stream.invoke(kernel)
            stream.sync()
        return call

    operations = {name: invoke_sync(name) for name in streams}
    total, rounds = context.pick(12000, 1500), context.pick(20, 3)
    with gc_paused():
        for operation in operations.values():
            time_each(operation, WARMUP)
        blocks = {name: (lambda op=op: time_each(op, total // rounds))
                  for name, op in operations.items()}
        samples = interleave(blocks, rounds)
    return {name: summarize(values, 1e-3) for name, values in samples.items()}


def _transfers(pymic, context):
    stream = pymic.devices[1].get_default_stream()
    sizes = context.pick([16 * MIB, 64 * MIB, 256 * MIB], [16 * MIB])
    rounds = context.pick(5, 2)
    figures = {}
    for nbytes in sizes:
        source = np.resize((np.arange(4093) % 251).astype(np.uint8), nbytes)
        destination = np.empty(nbytes, dtype=np.uint8)
        destination.fill(2)
        device = stream.allocate_device_memory(nbytes)
        stream.transfer_host2device(source.ctypes.data, device, nbytes)
        stream.transfer_device2host(device, destination.ctypes.data, nbytes)
        stream.sync()
        if not np.array_equal(source, destination):
            raise AssertionError(f"{nbytes} bytes: the round trip through the arena differs")

        def transfer(enqueue):
            def block():
                def one():
                    enqueue()
                    stream.sync()
                return [time_block(one) for _ in range(3)]
            return block

        contenders = {
            "h2d": transfer(lambda: stream.transfer_host2device(source.ctypes.data, device,
                                                                nbytes)),
            "d2h": transfer(lambda: stream.transfer_device2host(device, destination.ctypes.data,
                                                                nbytes)),
            "copyto": lambda: [time_block(lambda: np.copyto(destination, source))
                               for _ in range(3)],
        }
        samples = interleave(contenders, rounds)
        figures[nbytes] = {name: nbytes / summarize(values)["median"] / 1e9
                           for name, values in samples.items()}
        stream.deallocate_device_memory(device)
    return figures


def _dgemm(pymic, library_path, context):
    device = pymic.devices[1]
    stream = device.get_default_stream()
    kernel = device.load_library(library_path).bench_dgemm
    order = context.pick(2048, 1024)
    generator = np.random.default_rng(order)
    a, b = generator.random((order, order)), generator.random((order, order))
    device_a, device_b = stream.bind(a), stream.bind(b)
    device_c = stream.bind(np.zeros((order, order)))

    def kernel_only():
        stream.invoke(kernel, device_a, device_b, device_c, order)
        stream.sync()

    kernel_only()
    device_c.update_host()
    stream.sync()
    if not np.allclose(device_c.array, np.dot(a, b), rtol=1e-10, atol=1e-8 * order):
        raise AssertionError("the device process's dgemm differs from numpy.dot")

    def timed(operation):
        def sample():
            time.sleep(0.2)  # one BLAS pool's spinning out of the other's timing
            start = perf_ns()
            operation()
            return [(perf_ns() - start) / 1e9]
        return sample

    samples = interleave({"proc": timed(kernel_only), "numpy": timed(lambda: np.dot(a, b))},
                         context.pick(5, 2))
    flops = 2.0 * order ** 3
    return {"order": order,
            **{name: flops / summarize(values)["median"] / 1e9 for name, values in samples.items()}}


def measure(context_json, out):
    """Child side: measure everything on ``host;proc`` and write JSON."""
    import pathlib

    import pymic
    from context import Context

    options = json.loads(context_json)
    context = Context(quick=options["quick"], kernel_dir=pathlib.Path(options["kernel_dir"]))
    kinds = [device.kind for device in pymic.devices.values()]
    if kinds != ["host", "proc"]:
        raise SystemExit(f"expected a host and a proc device, got {kinds}")
    result = {
        "latency_us": _latency(pymic, context.kernel_library("bench_kernels"), context),
        "transfers_gb_per_s": {str(k): v for k, v in _transfers(pymic, context).items()},
        "dgemm_gflops": _dgemm(pymic, context.kernel_library("bench_dgemm"), context),
    }
    with open(out, "w", encoding="utf-8") as output:
        json.dump(result, output)


def run(context):
    """Run B11 and judge its targets.

    Parameters
    ----------
    context : Context
        Run options.

    Returns
    -------
    dict
        ``figures``, ``tables``, ``targets``.
    """
    options = json.dumps({"quick": context.quick, "kernel_dir": str(context.kernel_dir)})
    with tempfile.TemporaryDirectory() as scratch:
        out = os.path.join(scratch, "b11.json")
        env = dict(os.environ, PYMIC_DEVICES="host;proc")
        subprocess.run([sys.executable, __file__, options, out], env=env, check=True,
                       cwd=os.path.dirname(os.path.abspath(__file__)))
        with open(out, encoding="utf-8") as source:
            figures = json.load(source)

    latency = figures["latency_us"]
    proc, host = latency["proc"]["median"], latency["host"]["median"]
    rows = [
        targets.check("B11", "proc invoke + sync ≤ 2 µs", f"{proc:.2f} µs", "(absolute)", proc,
                      "<=", 2.0, value_text=f"{proc:.2f} µs"),
        targets.check("B11", "proc invoke + sync ≤ 5× the host device", f"{proc:.2f} µs",
                      f"host device {host:.2f} µs", proc / host, "<=", 5.0),
    ]
    transfers = figures["transfers_gb_per_s"]
    for direction in ("h2d", "d2h"):
        ratios = {int(size): rates[direction] / rates["copyto"] for size, rates in transfers.items()}
        worst = min(ratios, key=ratios.get)
        rows.append(targets.check(
            "B11", f"proc {direction} ≥ 0.9× copyto from 16 MiB up (worst size shown)",
            f"{transfers[str(worst)][direction]:.2f} GB/s at {worst // MIB} MiB",
            f"copyto {transfers[str(worst)]['copyto']:.2f} GB/s", ratios[worst], ">=", 0.9))
    dgemm = figures["dgemm_gflops"]
    rows.append(targets.check(
        "B11", f"proc dgemm n={dgemm['order']} kernel only ≥ 0.95× numpy.dot",
        f"{dgemm['proc']:.1f} GFLOP/s", f"numpy.dot {dgemm['numpy']:.1f} GFLOP/s",
        dgemm["proc"] / dgemm["numpy"], ">=", 0.95))
    table = [[f"{int(size) // MIB} MiB", f"{rates['h2d']:.2f}", f"{rates['d2h']:.2f}",
              f"{rates['copyto']:.2f}"] for size, rates in transfers.items()]
    return {"figures": figures,
            "tables": [{"title": "Invoke + sync latency (µs)",
                        "columns": ["device", "median", "p10", "p90", "samples"],
                        "rows": [[name, f"{s['median']:.2f}", f"{s['p10']:.2f}",
                                  f"{s['p90']:.2f}", s["n"]] for name, s in latency.items()]},
                       {"title": "Process device transfers (GB/s)",
                        "columns": ["size", "h2d", "d2h", "numpy.copyto"], "rows": table}],
            "notes": ["The host worker of a process-device stream sleeps while the device "
                      "process runs a kernel; the caller and the device thread spin."],
            "targets": rows}


if __name__ == "__main__":
    measure(sys.argv[1], sys.argv[2])
