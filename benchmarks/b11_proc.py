"""B11: the process device (PYMIC_DEVICES=proc) beside inter-process messaging.

Each figure is a ratio against a peer measured in the same run:

- empty-kernel invoke + sync on a process device, from C, against a
  round trip of one word between two processes through Open MPI's
  shared-memory transport (``c/roundtrip_mpi.c``, what an MPI offload
  runtime pays per remote call); a round trip through a plain pair of
  spinning shared-memory flags (``c/roundtrip_shm.c``) is shown as the
  floor.  The three C programs take turns, several rounds;
- the same from Python against the host device's invoke + sync plus that
  MPI round trip (interleaved blocks);
- the same from Python while two busy-looping processes keep both cores
  busy (as in B10), as a ratio to a direct ctypes call, against the quiet
  ratio measured just before;
- h2d and d2h transfers into the shared arena against numpy.copyto of the
  same size (16 MiB and up); and the dgemm kernel of B6 running in the
  device process against numpy.dot.

pymic reads PYMIC_DEVICES once, so the Python measurements run in a child
interpreter started with ``PYMIC_DEVICES="host;proc"`` (device 0 on the
host, device 1 a process device, both on every core).
"""

import ctypes
import json
import os
import shutil
import statistics
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
C_BOUND = 1.5       # proc invoke + sync from C ≤ this × the MPI round trip
PYTHON_BOUND = 1.5  # from Python ≤ this × (host device + MPI round trip)
LOAD_BOUND = 1.3    # under load: ratio to ctypes ≤ this × the quiet ratio


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


def _under_load(pymic, library_path, context):
    """Proc invoke + sync and a direct ctypes call, quiet and then under B10's load."""
    from b10_under_load import background_load

    stream = pymic.devices[1].get_default_stream()
    kernel = pymic.devices[1].load_library(library_path).bench_empty
    direct = ctypes.CDLL(library_path).bench_empty
    direct.argtypes, direct.restype = [], None

    def proc():
        stream.invoke(kernel)
        stream.sync()

    operations = {"proc": proc, "ctypes": direct}
    total, rounds = context.pick(4000, 600), context.pick(20, 3)

    def measure():
        with gc_paused():
            for operation in operations.values():
                time_each(operation, 200)
            samples = interleave({name: (lambda op=op: time_each(op, total // rounds))
                                  for name, op in operations.items()}, rounds)
        return {name: summarize(values, 1e-3) for name, values in samples.items()}

    quiet = measure()
    with background_load():
        loaded = measure()
    return {"quiet": quiet, "loaded": loaded}


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
        "under_load_us": _under_load(pymic, context.kernel_library("bench_kernels"), context),
        "transfers_gb_per_s": {str(k): v for k, v in _transfers(pymic, context).items()},
        "dgemm_gflops": _dgemm(pymic, context.kernel_library("bench_dgemm"), context),
    }
    with open(out, "w", encoding="utf-8") as output:
        json.dump(result, output)


def _mpi_launch():
    """mpirun for 2 ranks on this node and its environment, or a reason it cannot run."""
    mpirun = shutil.which("mpirun")
    if mpirun is None:
        return None, None, "mpirun is not on PATH (`make mpi` installs Debian's OpenMPI)"
    version = subprocess.run([mpirun, "--version"], capture_output=True, text=True).stdout
    env = {}
    if "Open MPI" in version or "OpenRTE" in version:
        # Root allowed (these machines run as root); Open MPI's own binding
        # (a core per rank) is kept: it is what an MPI program gets.
        env = {"OMPI_ALLOW_RUN_AS_ROOT": "1", "OMPI_ALLOW_RUN_AS_ROOT_CONFIRM": "1"}
    return [mpirun, "-np", "2"], env, None


def _c_round_trips(context):
    """Median round trips (µs) of the three C programs, taking turns for several rounds.

    Returns
    -------
    dict
        ``proc``, ``shm`` and ``mpi`` summaries (each the round whose
        median is the median of the rounds' medians), and ``mpi_missing``:
        why the MPI peer did not run, or None.
    """
    build = context.kernel_dir.resolve()
    library = context.kernel_library("bench_kernels")
    programs = {
        "proc": ([os.fspath(build / "roundtrip_pymic"), library, "bench_empty"],
                 {"PYMIC_DEVICES": "proc"}),
        "shm": ([os.fspath(build / "roundtrip_shm")], {}),
    }
    mpi_missing = None
    launcher, launch_env, reason = _mpi_launch()
    if not (build / "roundtrip_mpi").is_file():
        mpi_missing = "roundtrip_mpi was not built (no mpicc: `make mpi` installs Open MPI)"
    elif launcher is None:
        mpi_missing = reason
    else:
        programs["mpi"] = (launcher + [os.fspath(build / "roundtrip_mpi")], launch_env)
    rounds = {name: [] for name in programs}
    for index in range(context.pick(5, 1)):
        order = list(programs) if index % 2 == 0 else list(reversed(programs))
        for name in order:
            command, extra = programs[name]
            completed = subprocess.run(command, env=dict(os.environ, **extra),
                                       capture_output=True, text=True, timeout=120)
            if completed.returncode != 0:
                raise RuntimeError(f"{command[0]} exited with status {completed.returncode}: "
                                   f"{completed.stderr.strip()[-500:]}")
            rounds[name].append(json.loads(completed.stdout.strip().splitlines()[-1]))
    figures = {}
    for name, summaries in rounds.items():
        middle = statistics.median_low([summary["median"] for summary in summaries])
        figures[name] = next(s for s in summaries if s["median"] == middle)
        figures[name]["rounds"] = len(summaries)
    figures["mpi_missing"] = mpi_missing
    return figures


def _latency_rows(latency, c_figures, under_load):
    """The round-trip target rows (C and Python against MPI, and under load)."""
    proc, host = latency["proc"]["median"], latency["host"]["median"]
    proc_c, shm = c_figures["proc"]["median"], c_figures["shm"]["median"]
    mpi = c_figures["mpi"]["median"] if "mpi" in c_figures else None
    floor = f"; shared-memory flag pair {shm:.2f} µs"
    if mpi is None:
        note = f"no MPI peer: {c_figures['mpi_missing']}"
        rows = [targets.check("B11", f"proc invoke + sync from C ≤ {C_BOUND}× an MPI round trip",
                              f"{proc_c:.2f} µs", "—" + floor, None, "<=", C_BOUND, note=note),
                targets.check("B11", f"proc invoke + sync from Python ≤ {PYTHON_BOUND}× "
                              "(host device + MPI round trip)", f"{proc:.2f} µs",
                              f"host device {host:.2f} µs", None, "<=", PYTHON_BOUND, note=note)]
    else:
        rows = [targets.check("B11", f"proc invoke + sync from C ≤ {C_BOUND}× an MPI round trip",
                              f"{proc_c:.2f} µs", f"Open MPI {mpi:.2f} µs" + floor, proc_c / mpi,
                              "<=", C_BOUND),
                targets.check("B11", f"proc invoke + sync from Python ≤ {PYTHON_BOUND}× "
                              "(host device + MPI round trip)", f"{proc:.2f} µs",
                              f"host device {host:.2f} µs + Open MPI {mpi:.2f} µs",
                              proc / (host + mpi), "<=", PYTHON_BOUND)]
    quiet, loaded = under_load["quiet"], under_load["loaded"]
    quiet_ratio = quiet["proc"]["median"] / quiet["ctypes"]["median"]
    loaded_ratio = loaded["proc"]["median"] / loaded["ctypes"]["median"]
    rows.append(targets.check(
        "B11", f"under load (2 busy processes): proc invoke + sync / ctypes ≤ {LOAD_BOUND}× "
        "the quiet ratio", f"{loaded['proc']['median']:.2f} µs ({loaded_ratio:.1f}× ctypes)",
        f"quiet {quiet['proc']['median']:.2f} µs ({quiet_ratio:.1f}× ctypes)",
        loaded_ratio / quiet_ratio, "<=", LOAD_BOUND))
    return rows


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
    figures["c_round_trip_us"] = _c_round_trips(context)

    latency = figures["latency_us"]
    rows = _latency_rows(latency, figures["c_round_trip_us"], figures["under_load_us"])
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
    c_names = {"proc": "proc invoke + sync (C)", "mpi": "Open MPI send + receive",
               "shm": "shared-memory flag pair"}
    c_rows = [[c_names[name], f"{s['median']:.2f}", f"{s['p10']:.2f}", f"{s['p90']:.2f}",
               s["n"], s["rounds"]]
              for name, s in figures["c_round_trip_us"].items() if name in c_names]
    load_rows = [[f"{name} ({phase})", f"{s['median']:.2f}", f"{s['p10']:.2f}",
                  f"{s['p90']:.2f}", s["n"]]
                 for phase, summaries in figures["under_load_us"].items()
                 for name, s in summaries.items()]
    return {"figures": figures,
            "tables": [{"title": "Round trip between two processes, from C (µs)",
                        "columns": ["contender", "median", "p10", "p90", "samples",
                                    "rounds"],
                        "rows": c_rows},
                       {"title": "Invoke + sync latency from Python (µs)",
                        "columns": ["device", "median", "p10", "p90", "samples"],
                        "rows": [[name, f"{s['median']:.2f}", f"{s['p10']:.2f}",
                                  f"{s['p90']:.2f}", s["n"]] for name, s in latency.items()]},
                       {"title": "Process device quiet and under load (µs)",
                        "columns": ["contender", "median", "p10", "p90", "samples"],
                        "rows": load_rows},
                       {"title": "Process device transfers (GB/s)",
                        "columns": ["size", "h2d", "d2h", "numpy.copyto"], "rows": table}],
            "notes": ["A thread that syncs on the device's cores carries out the mailbox "
                      "round trip itself and spins for the answer while the device thread "
                      "spins for the next request (docs/design.md, \"Waiting on a process "
                      "device\")."],
            "targets": rows}


if __name__ == "__main__":
    measure(sys.argv[1], sys.argv[2])
