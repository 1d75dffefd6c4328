"""B13: the MPI device (PYMIC_DEVICES=mpi) against the same MPI by itself.

Each figure is measured twice -- over Open MPI's shared-memory transport
(its default between two processes of a node) and over TCP only
(``OMPI_MCA_btl=self,tcp``, the path a network between nodes takes) --
and each time against the same transport's peer:

* latency: an empty kernel invoke + sync on the MPI device, from C
  (c/bench_mpi_device.c) and from Python, against the MPI round trip
  between the same two processes: a one-word ping-pong between the
  measuring process and the device's (``pymic_mpi_round_trip``, MPI_Send
  and MPI_Recv on a tag of their own), taking turns with the invokes in
  the same job, so both see the same placement of the two processes on
  the cores (separate jobs on this VM differed by up to 2.5x from one
  launch to the next).  Reported beside it: a one-word ping-pong of two
  ranks of a job of their own (c/bench_mpi_peer.c) at ``MPI_Init``'s
  thread level (no locks in Open MPI's calls), at
  ``MPI_THREAD_MULTIPLE`` (the level the two processes of an MPI device
  run at), and the exchange an invoke makes without either engine; and
  from Python, mpi4py's ``send``/``recv`` pair;
* bandwidth: h2d + sync and d2h + sync from 4 KiB to 256 MiB against
  ``MPI_Send``/``MPI_Recv`` of the same bytes followed by a one-word answer
  (the shape of a copy that completes), each the best of 7 in a run
  after the copies the device takes to choose how each size travels
  (``PYMIC_MPI_LEARNING_COPIES``, docs/mpi.md "Chunks or one message"):
  the target's peer is that exchange between the same two processes
  (``pymic_mpi_exchange``), taking turns with the copies at each size in
  each of five runs, and each size's ratio the median of the five runs'
  (this VM has phases of seconds to minutes in which every contender's
  copies run at 2.2 GB/s instead of 8-9: a separate job's peer may land
  in a phase the device's run missed, or the other way round).
  Reported beside it: the same of two ranks of a job of their own, five
  runs taking turns with the device's, each size the median of its runs;
* dgemm n = 2048 on the MPI device with its transfers (A and B in, C out)
  against numpy.dot on the host.

The device is one ``pymic-device`` rank of an MPMD launch with the
measuring program (``mpirun -np 1 program : -np 1 pymic-device``); the
copies' peers are two ranks of ``mpirun -np 2``, on the same node over the
same transport.  A device
the measuring process spawns (``MPI_Comm_spawn``) talks to it over TCP
even on one node (Open MPI connects a spawned job to its parent that way),
so its invoke + sync is reported as a line of its own, not judged.
"""

import json
import os
import shutil
import subprocess
import sys
import tempfile
import time

import numpy as np

import targets
from timing import gc_paused, interleave, perf_ns, summarize, time_each

NAME = "MPI device: latency, bandwidth, dgemm against the same MPI"
KIB, MIB = 1024, 1024 * 1024
SIZES = [4 * KIB * 4 ** k for k in range(9)]  # 4 KiB .. 256 MiB
QUICK_SIZES = [4 * KIB, 1 * MIB, 16 * MIB]
TRANSPORTS = {"shared memory": {}, "tcp": {"OMPI_MCA_btl": "self,tcp"}}
#: Open MPI: root allowed (containers), no CMA single copy (needs ptrace).
MPI_ENV = {"OMPI_ALLOW_RUN_AS_ROOT": "1", "OMPI_ALLOW_RUN_AS_ROOT_CONFIRM": "1",
           "OMPI_MCA_btl_vader_single_copy_mechanism": "none"}
HERE = os.path.dirname(os.path.abspath(__file__))
#: Runs of the copies per transport, the device's and its peer's in turn
#: (see `_copies`).  Five, not three: over TCP this VM has phases minutes
#: long in which a 1 MiB message takes 580 µs instead of 125 (rdtsc probes
#: of both contenders), and with three runs each one contender could miss
#: every fast phase while the other caught one.
BANDWIDTH_ROUNDS = 5


def _unavailable():
    """Why the MPI device cannot be measured here, or None."""
    import importlib.util
    for program in ("mpirun", "mpicc"):
        if shutil.which(program) is None:
            return f"{program} is not on PATH (`make mpi` installs Debian's OpenMPI)"
    package = importlib.util.find_spec("pymic").submodule_search_locations[0]
    if not os.path.exists(os.path.join(package, "libpymic_mpi.so")):
        return "pymic was built without its MPI device (libpymic_mpi.so)"
    if importlib.util.find_spec("mpi4py") is None:
        return "mpi4py is not installed (`make mpi` builds it)"
    return None


def _build(context):
    """Compile the C peer and the C pymic side into the kernel directory.

    Returns the peer, the C pymic side and ``pymic-device`` (installed
    beside libpymic)."""
    import pymic
    package = os.path.dirname(pymic.__file__)
    out = context.kernel_dir
    peer, device = str(out / "bench_mpi_peer"), str(out / "bench_mpi_device")
    subprocess.run(["mpicc", "-O2", "-o", peer, os.path.join(HERE, "c", "bench_mpi_peer.c")],
                   check=True)
    subprocess.run(["cc", "-O2", "-std=c11", "-D_POSIX_C_SOURCE=200809L", "-Wall", "-Wextra", f"-I{pymic.get_include()}", "-o", device,
                    os.path.join(HERE, "c", "bench_mpi_device.c"), f"-L{package}", "-lpymic",
                    "-lpymic_mpi",
                    f"-Wl,-rpath,{package}"], check=True)
    return peer, device, os.path.join(package, "pymic-device")


def _json_of(command, env, timeout=600):
    result = subprocess.run(command, capture_output=True, text=True, timeout=timeout,
                            env=dict(os.environ, **MPI_ENV, **env))
    if result.returncode != 0:
        raise RuntimeError(f"{' '.join(command[:4])}... exited with {result.returncode}: "
                           f"{result.stderr.strip()[-600:]}")
    return json.loads(result.stdout.strip().splitlines()[-1])


def _mpirun(program, env):
    """Two ranks of `program`: the MPI peers."""
    return [shutil.which("mpirun"), "-np", "2", "--oversubscribe", "--bind-to", "none",
            *program]


def _mpmd(program, server):
    """`program` and one `server` (pymic-device) rank as one job: the MPI
    device and its host are two ranks of it, as the peers are."""
    return [shutil.which("mpirun"), "--oversubscribe", "--bind-to", "none",
            "-np", "1", *program, ":", "-np", "1", server]


MPI4PY_PINGPONG = """
import json, sys, time
from mpi4py import MPI
comm = MPI.COMM_WORLD
rank, count, repeats = comm.Get_rank(), int(sys.argv[1]), int(sys.argv[2])
times = []
for _ in range(repeats + 1):
    comm.Barrier()
    start = time.perf_counter()
    for _ in range(count):
        if rank == 0:
            comm.send(0, dest=1)
            comm.recv(source=1)
        else:
            comm.recv(source=0)
            comm.send(0, dest=0)
    times.append((time.perf_counter() - start) / count)
if rank == 0:
    print(json.dumps({"round_trip_s": times[1:]}))
"""


def measure_python(context_json, out):
    """Child side (PYMIC_DEVICES=mpi): Python invoke + sync and dgemm."""
    import pathlib

    import pymic
    from context import Context

    options = json.loads(context_json)
    context = Context(quick=options["quick"], kernel_dir=pathlib.Path(options["kernel_dir"]))
    device = pymic.devices[0]
    if device.kind != "mpi":
        raise SystemExit(f"expected an MPI device, got {device.kind}")
    stream = device.get_default_stream()
    empty = device.load_library(context.kernel_library("bench_kernels")).bench_empty

    def invoke_sync():
        stream.invoke(empty)
        stream.sync()

    count, rounds = context.pick(4000, 500), context.pick(10, 3)
    with gc_paused():
        time_each(invoke_sync, 500)
        samples = interleave({"pymic": lambda: time_each(invoke_sync, count // rounds)}, rounds)
    latency = summarize(samples["pymic"], 1e-3)  # µs

    kernel = device.load_library(context.kernel_library("bench_dgemm")).bench_dgemm
    order = context.pick(2048, 512)
    generator = np.random.default_rng(order)
    a, b = generator.random((order, order)), generator.random((order, order))
    c = np.zeros((order, order))

    def offloaded():
        device_a, device_b, device_c = stream.bind(a), stream.bind(b), stream.bind(c)
        stream.invoke(kernel, device_a, device_b, device_c, order)
        device_c.update_host()
        stream.sync()
        return device_c.array

    if not np.allclose(offloaded(), np.dot(a, b), rtol=1e-10, atol=1e-8 * order):
        raise AssertionError("the MPI device's dgemm differs from numpy.dot")

    def timed(operation):
        def sample():
            time.sleep(0.2)
            start = perf_ns()
            operation()
            return [(perf_ns() - start) / 1e9]
        return sample

    dgemm = interleave({"mpi": timed(offloaded), "numpy": timed(lambda: np.dot(a, b))},
                       context.pick(5, 2))
    flops = 2.0 * order ** 3
    with open(out, "w", encoding="utf-8") as output:
        json.dump({"python_latency_us": latency,
                   "dgemm": {"order": order, **{name: flops / summarize(v)["median"] / 1e9
                                                for name, v in dgemm.items()}}}, output)


def _transport(context, programs, env):
    """Every figure over one transport."""
    peer, device, server = programs
    library = context.kernel_library("bench_kernels")
    # Each turn of invokes or round trips lasts ~0.1 s or more: a device
    # thread that waited through the other's turn wakes often for the
    # first few ms of its own wait (progress.c) and takes a core each time.
    shm = "OMPI_MCA_btl" not in env
    count = context.pick(200000 if shm else 20000, 20000 if shm else 2000)
    repeats = context.pick(7, 3)
    sizes = context.pick(SIZES, QUICK_SIZES)
    size_args = [str(size) for size in sizes]
    device_env = dict(env, PYMIC_DEVICES="mpi")
    latency = [device, library, "latency", str(count), str(repeats)]
    turns = _json_of(_mpmd(latency, server), device_env)
    spawned = _json_of(latency, device_env)
    figures = {
        "c_invoke_sync_s": turns["invoke_sync_s"],
        "c_round_trip_s": turns["round_trip_s"],
        "c_pingpong_s": _json_of(_mpirun([peer, "latency", str(count), str(repeats)], env),
                                 env)["round_trip_s"],
        "c_pingpong_multiple_s": _json_of(
            _mpirun([peer, "latency", str(count), str(repeats), "multiple"], env),
            env)["round_trip_s"],
        "c_pingpong_polled_s": _json_of(
            _mpirun([peer, "latency", str(count), str(repeats), "polled"], env),
            env)["round_trip_s"],
        "c_invoke_sync_spawned_s": spawned["invoke_sync_s"],
        "c_round_trip_spawned_s": spawned["round_trip_s"],
        "mpi4py_pingpong_s": _json_of(
            _mpirun([sys.executable, "-c", MPI4PY_PINGPONG, str(count // 4), str(repeats)], env),
            env)["round_trip_s"],
    }
    figures.update(_copies(context, lambda: _json_of(
        _mpmd([device, library, "bandwidth", str(repeats), *size_args], server), device_env),
        lambda: _json_of(_mpirun([peer, "bandwidth", str(repeats), *size_args], env), env)))
    options = json.dumps({"quick": context.quick, "kernel_dir": str(context.kernel_dir)})
    with tempfile.TemporaryDirectory() as scratch:
        out = os.path.join(scratch, "b13.json")
        subprocess.run(_mpmd([sys.executable, __file__, options, out], server), check=True,
                       cwd=HERE, env=dict(os.environ, **MPI_ENV, **device_env))
        with open(out, encoding="utf-8") as source:
            figures.update(json.load(source))
    return figures


def _copies(context, device_run, peer_run):
    """The copy figures of the device and its peer, taking turns.

    One run of each, seconds apart, is no fair pair on a shared machine:
    back-to-back runs of the same program gave its best-of-7 at 1 MiB
    anywhere from 0.2 to 22 GB/s while other work ran (the other
    contender's run lands in another moment).  So each runs
    `BANDWIDTH_ROUNDS` times, the two alternating (the first to go
    alternates too), and each size keeps the median of its runs' times
    (each run's time being its best of 7).  Not the best of all runs: one
    run of the MPI peer caught a phase in which shared-memory copies from
    64 KiB to 4 MiB ran at 20-24 GB/s (cache to cache) instead of 8-9,
    and the best of five runs then judged the device against that one run.

    The device's run also measures the same shapes as plain MPI messages
    between its own two processes, taking turns with its copies
    (``pymic_mpi_exchange``): a peer no other moment of the machine can
    favour, reported beside the target's.

    Parameters
    ----------
    context : Context
        The run's options (quick: one run each).
    device_run : callable
        One run of the device's side: ``{"device": copies, "send_recv":
        copies}``, each ``{size: {"h2d": seconds, "d2h": seconds}}``.
    peer_run : callable
        One run of the MPI peer's job: ``copies``.

    Returns
    -------
    dict
        ``device_copies_s``, ``send_recv_copies_s`` and ``peer_copies_s``,
        per size the median seconds of ``h2d`` and ``d2h``; the same names
        with ``_runs_s`` for ``_s``, every run's.
    """
    runs = {"device_copies_s": [], "send_recv_copies_s": [], "peer_copies_s": []}
    for round_ in range(context.pick(BANDWIDTH_ROUNDS, 1)):
        for turn in ("device", "peer") if round_ % 2 == 0 else ("peer", "device"):
            if turn == "device":
                both = device_run()
                runs["device_copies_s"].append(both["device"])
                runs["send_recv_copies_s"].append(both["send_recv"])
            else:
                runs["peer_copies_s"].append(peer_run())
    figures = {name: median_of(seconds) for name, seconds in runs.items()}
    figures.update({name[:-len("_s")] + "_runs_s": seconds for name, seconds in runs.items()})
    return figures


def median_of(runs):
    """Per size and direction the median time of several runs.

    Parameters
    ----------
    runs : list of dict
        Each run's ``{size: {"h2d": seconds, "d2h": seconds}}``.

    Returns
    -------
    dict
        The same shape, each time the median of the runs' (of an even
        number of runs, the mean of the middle two).
    """
    times = {}
    for run in runs:
        for size, by_direction in run.items():
            for direction, seconds in by_direction.items():
                times.setdefault(size, {}).setdefault(direction, []).append(seconds)
    return {size: {direction: _median(values) for direction, values in by_direction.items()}
            for size, by_direction in times.items()}


def _median(values):
    return float(np.median(values))


def run(context):
    """Run B13 and judge its targets.

    Parameters
    ----------
    context : Context
        Run options.

    Returns
    -------
    dict
        ``figures`` (per transport), ``tables``, ``targets``.
    """
    reason = _unavailable()
    if reason:
        return {"figures": {"unavailable": reason},
                "targets": [targets.check("B13", "MPI device invoke + sync ≤ 1.5× an MPI "
                                          "round trip", "not run", "not run", None, "<=", 1.5,
                                          note=reason)]}
    programs = _build(context)
    figures = {name: _transport(context, programs, env) for name, env in TRANSPORTS.items()}
    return judge(figures)


def latency_rows(name, f):
    """B13's latency rows of one transport.

    Parameters
    ----------
    name : str
        The transport ("shared memory", "tcp").
    f : dict
        Its figures: per-repeat seconds ``c_invoke_sync_s`` and
        ``c_round_trip_s`` (one MPMD job, taking turns),
        ``c_invoke_sync_spawned_s`` and ``c_round_trip_spawned_s`` (a
        spawned device), ``c_pingpong_s``, ``c_pingpong_multiple_s``,
        ``c_pingpong_polled_s`` (jobs of their own), ``mpi4py_pingpong_s``,
        and ``python_latency_us`` (a summary).

    Returns
    -------
    list of dict
        The target (C invoke + sync against the round trip between the
        same two processes), then reported: the same against the plain
        ping-pong of a job of its own, at MPI_THREAD_MULTIPLE, against the
        exchange alone, the spawned device's and the Python one.
    """
    c_us = _median(f["c_invoke_sync_s"]) * 1e6
    round_trip_us = _median(f["c_round_trip_s"]) * 1e6
    ping_us = _median(f["c_pingpong_s"]) * 1e6
    multiple_us = _median(f["c_pingpong_multiple_s"]) * 1e6
    polled_us = _median(f["c_pingpong_polled_s"]) * 1e6
    spawned_us = _median(f["c_invoke_sync_spawned_s"]) * 1e6
    spawned_trip_us = _median(f["c_round_trip_spawned_s"]) * 1e6
    py_us = f["python_latency_us"]["median"]
    mpi4py_us = _median(f["mpi4py_pingpong_s"]) * 1e6
    return [
        targets.check(
            "B13", f"{name}: C invoke + sync ≤ 1.5× a C MPI round trip between the same two "
            "processes (MPI_Send/MPI_Recv, taking turns in one job)", f"{c_us:.2f} µs",
            f"round trip {round_trip_us:.2f} µs", c_us / round_trip_us, "<=", 1.5),
        targets.reported(
            "B13", f"{name}: C invoke + sync against a C ping-pong of two ranks of a job of "
            "their own at MPI_Init's thread level (no locks in Open MPI's calls; the device's "
            "processes run at MPI_THREAD_MULTIPLE)", f"{c_us:.2f} µs",
            f"ping-pong {ping_us:.2f} µs", f"{c_us / ping_us:.2f}×"),
        targets.reported(
            "B13", f"{name}: C invoke + sync against the same ping-pong at "
            "MPI_THREAD_MULTIPLE", f"{c_us:.2f} µs",
            f"ping-pong (multiple) {multiple_us:.2f} µs", f"{c_us / multiple_us:.2f}×"),
        targets.reported(
            "B13", f"{name}: C invoke + sync against its MPI exchange alone (multiple, each "
            "receive posted ahead and polled with MPI_Test, no engine on either side)",
            f"{c_us:.2f} µs", f"exchange {polled_us:.2f} µs "
            f"({polled_us / ping_us:.2f}× the plain ping-pong)", f"{c_us / polled_us:.2f}×"),
        targets.reported(
            "B13", f"{name}: C invoke + sync on a spawned device (MPI_Comm_spawn: TCP to the "
            "parent even on one node; not a target) against its round trip",
            f"{spawned_us:.2f} µs", f"round trip {spawned_trip_us:.2f} µs",
            f"{spawned_us / spawned_trip_us:.2f}×"),
        targets.reported(
            "B13", f"{name}: Python invoke + sync against mpi4py send/recv",
            f"{py_us:.2f} µs", f"mpi4py {mpi4py_us:.2f} µs", f"{py_us / mpi4py_us:.2f}×"),
    ]


def paired_ratio(device_runs, peer_runs, size):
    """Per direction the median over runs of each run's peer/device ratio.

    Parameters
    ----------
    device_runs, peer_runs : list of dict
        Run i of each, ``{size: {"h2d": seconds, "d2h": seconds}}``,
        measured in the same job (so in the same moment of the machine).
    size : str
        The size to compare.

    Returns
    -------
    dict
        ``{"h2d": ratio, "d2h": ratio}``: above 1 the device is faster.
    """
    return {d: _median([peer[size][d] / device[size][d]
                        for device, peer in zip(device_runs, peer_runs)])
            for d in ("h2d", "d2h")}


def _gbps(size, seconds):
    """``size`` bytes in ``seconds`` as GB/s (10^9 bytes/s), two decimals."""
    return f"{size / seconds / 1e9:.2f}"


def _note_worst(worst, size, ratio):
    """Keep in ``worst`` (per direction: size, ratio) the lowest ratio."""
    for d, value in ratio.items():
        if d not in worst or value < worst[d][1]:
            worst[d] = (size, value)


def judge(figures):
    """B13's rows and tables from its figures (per transport).

    Parameters
    ----------
    figures : dict
        Per transport name, what `_transport` measured.

    Returns
    -------
    dict
        ``figures``, ``tables``, ``targets``, ``notes``.
    """
    rows, tables = [], []
    for name, f in figures.items():
        rows.extend(latency_rows(name, f))
        table = []
        worst = {}
        worst_same = {}
        same = f["send_recv_copies_s"]
        for size, device_s in f["device_copies_s"].items():
            peer_s = f["peer_copies_s"][size]
            if int(size) >= MIB:
                _note_worst(worst, int(size), {d: peer_s[d] / device_s[d] for d in ("h2d", "d2h")})
                _note_worst(worst_same, int(size), paired_ratio(
                    f["device_copies_runs_s"], f["send_recv_copies_runs_s"], size))
            table.append([f"{int(size) // MIB} MiB" if int(size) >= MIB else
                          f"{int(size) // KIB} KiB"] +
                         [_gbps(int(size), by[size][d])
                          for by in (f["device_copies_s"], f["peer_copies_s"], same)
                          for d in ("h2d", "d2h")])
        for d, (size, ratio) in worst_same.items():
            rows.append(targets.check(
                "B13", f"{name}: {d} ≥ 0.9× MPI Send/Recv between the same two processes from "
                "1 MiB up (taking turns in one job; per size the median of the runs' ratios; "
                "worst size shown)",
                f"{_gbps(size, f['device_copies_s'][str(size)][d])} GB/s at {size // MIB} MiB",
                f"Send/Recv {_gbps(size, same[str(size)][d])} GB/s", ratio, ">=", 0.9))
        for d, (size, ratio) in worst.items():
            rows.append(targets.reported(
                "B13", f"{name}: {d} against MPI Send/Recv of two ranks of a job of their own "
                "from 1 MiB up (per size the median of the runs; worst size shown)",
                f"{_gbps(size, f['device_copies_s'][str(size)][d])} GB/s at {size // MIB} MiB",
                f"Send/Recv {_gbps(size, f['peer_copies_s'][str(size)][d])} GB/s",
                f"{ratio:.2f}×"))
        dgemm = f["dgemm"]
        rows.append(targets.reported(
            "B13", f"{name}: dgemm n={dgemm['order']} with transfers on the MPI device "
            "against numpy.dot", f"{dgemm['mpi']:.1f} GFLOP/s",
            f"numpy.dot {dgemm['numpy']:.1f} GFLOP/s", f"{dgemm['mpi'] / dgemm['numpy']:.2f}×"))
        tables.append({"title": f"{name}: copies (GB/s)",
                       "columns": ["size", "pymic h2d", "pymic d2h", "MPI h2d-shaped",
                                   "MPI d2h-shaped", "same processes h2d-shaped",
                                   "same processes d2h-shaped"], "rows": table})
    return {"figures": figures, "tables": tables, "targets": rows,
            "notes": ["The MPI device and the measuring program are two ranks of one MPMD "
                      "mpirun (program : pymic-device); the latency target's round trip is "
                      "measured between those same two processes, taking turns with the "
                      "invokes. The other MPI peers run as two ranks of an mpirun of their own "
                      "on this node over the same transport. "
                      "Copies are synchronous round trips (the answer of each is awaited); "
                      f"each size's figure is the median of {BANDWIDTH_ROUNDS} runs (quick: 1) "
                      "of the best of 7, the device's and the peer's runs taking turns. "
                      "The copies' target peer is plain MPI_Send/MPI_Recv of the same shapes "
                      "between the measuring process and the device's (pymic_mpi_exchange), "
                      "taking turns with the device's copies at each size in the device's own "
                      "runs; each size's ratio is the median of the runs' ratios."]}


if __name__ == "__main__":
    measure_python(sys.argv[1], sys.argv[2])
