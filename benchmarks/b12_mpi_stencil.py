"""B12: the heat stencil of examples/heat_mpi on 2 MPI ranks, each rank
offloading its block to its own ``PYMIC_DEVICES=host:auto`` device, beside
the same 2 ranks doing the same steps with plain NumPy.

run.py calls :func:`run`, which builds the example's kernel and starts
``mpirun -np 2 --bind-to none python b12_mpi_stencil.py ...`` (unbound, so
host:auto splits the cores by local rank).  Inside, every rank runs both
contenders in turns (interleaved rounds, alternating order), each turn
``STEPS`` steps of the whole distributed stencil: halo exchange with mpi4py
``Sendrecv`` and one Jacobi sweep of the block.  A turn is timed between
barriers and the slowest rank's time counts.  Both contenders start from
the same grid and do the same number of steps, so at the end their blocks
must agree; rank 0 writes the samples as JSON for the parent.
"""

import json
import os
import pathlib
import shutil
import subprocess
import sys
import tempfile
import time

HERE = pathlib.Path(__file__).resolve().parent
EXAMPLE = HERE.parent / "examples" / "heat_mpi"

NAME = "MPI heat stencil, 2 ranks on host:auto"
GOAL = "2 ranks on host:auto ≥ 1.0× 2 ranks of NumPy (same stencil)"
RANKS = 2
#: Grid sides (interior points per side): cache-resident and memory-bound.
SIZES = (512, 2048)
QUICK_SIZES = (512,)


# ------------------------------------------------------------- the ranks

def _numpy_step(comm, block, following, rows, above, below):
    """One step of the NumPy peer: host halo exchange, then the sweep."""
    comm.Sendrecv(block[1], dest=above, recvbuf=block[rows + 1], source=below)
    comm.Sendrecv(block[rows], dest=below, recvbuf=block[0], source=above)
    following[1:-1, 1:-1] = 0.25 * (block[:-2, 1:-1] + block[2:, 1:-1]
                                    + block[1:-1, :-2] + block[1:-1, 2:])


def rank_main(library_path, n, steps, rounds, out):
    """Run both contenders on this rank; rank 0 writes the samples to `out`.

    Parameters
    ----------
    library_path : str
        The example's kernel library (``jacobi_sweep``).
    n : int
        Interior points per side of the global grid.
    steps : int
        Stencil steps per timed turn.
    rounds : int
        Turns per contender.
    out : str
        JSON file rank 0 writes.
    """
    os.environ["PYMIC_DEVICES"] = "host:auto"  # before pymic is imported
    sys.path.insert(0, str(EXAMPLE))
    import numpy as np
    from mpi4py import MPI

    import heat_mpi
    import pymic

    comm = MPI.COMM_WORLD
    rank, size = comm.Get_rank(), comm.Get_size()
    device = pymic.devices[0]
    library = device.load_library(library_path)
    stream = device.get_default_stream()
    starts = heat_mpi.block_rows(n, size)
    first, rows, cols = starts[rank], starts[rank + 1] - starts[rank], n + 2
    start_block = heat_mpi.initial_grid(n)[first:first + rows + 2].copy()
    above = rank - 1 if rank > 0 else MPI.PROC_NULL
    below = rank + 1 if rank < size - 1 else MPI.PROC_NULL

    offload = {"current": stream.bind(start_block.copy()),
               "following": stream.bind(start_block.copy())}
    change = stream.bind(np.zeros(1))
    host = {"current": start_block.copy(), "following": start_block.copy()}

    def pymic_steps(count):
        for _ in range(count):
            heat_mpi.exchange_halos(comm, offload["current"], rows, above, below)
            stream.invoke(library.jacobi_sweep, offload["current"], offload["following"],
                          rows, cols, change)
            offload["current"], offload["following"] = offload["following"], offload["current"]
        stream.sync()

    def numpy_steps(count):
        for _ in range(count):
            _numpy_step(comm, host["current"], host["following"], rows, above, below)
            host["current"], host["following"] = host["following"], host["current"]

    def timed_turn(operation):
        comm.Barrier()
        started = time.perf_counter()
        operation(steps)
        return comm.allreduce(time.perf_counter() - started, op=MPI.MAX)

    contenders = {"pymic": pymic_steps, "numpy": numpy_steps}
    for operation in contenders.values():
        operation(1)  # warm-up: first touches, library, MPI connections
    samples = {name: [] for name in contenders}
    for round_index in range(rounds):
        order = list(contenders) if round_index % 2 == 0 else list(contenders)[::-1]
        for name in order:
            samples[name].append(timed_turn(contenders[name]))

    offload["current"].update_host()
    stream.sync()
    difference = comm.allreduce(float(np.max(np.abs(offload["current"].array
                                                    - host["current"]))), op=MPI.MAX)
    placement = comm.gather(list(device.cpus), root=0)
    if rank == 0:
        with open(out, "w", encoding="utf-8") as result:
            json.dump({"samples": samples, "difference": difference, "cpus": placement,
                       "rows_per_rank": [starts[r + 1] - starts[r] for r in range(size)]},
                      result)


# ------------------------------------------------------------ the parent

def _mpi_unavailable():
    """Why MPI cannot run here, or None."""
    if shutil.which("mpirun") is None:
        return "mpirun is not on PATH (`make mpi` installs Debian's OpenMPI)"
    try:
        import mpi4py  # noqa: F401
    except ImportError:
        return "mpi4py does not import (`make mpi` builds it into the venv)"
    return None


def _launch_command():
    """mpirun with the flags Open MPI needs here, and its extra environment."""
    mpirun = shutil.which("mpirun")
    version = subprocess.run([mpirun, "--version"], capture_output=True, text=True).stdout
    command, env = [mpirun, "-np", str(RANKS)], {}
    if "Open MPI" in version or "OpenRTE" in version:
        # Unbound (host:auto splits by local rank); root allowed; no CMA
        # single-copy, which containers often forbid (both contenders move
        # the same halo rows, so it does not favour either).
        command += ["--bind-to", "none", "--oversubscribe"]
        env = {"OMPI_ALLOW_RUN_AS_ROOT": "1", "OMPI_ALLOW_RUN_AS_ROOT_CONFIRM": "1",
               "OMPI_MCA_btl_vader_single_copy_mechanism": "none"}
    return command, env


def _build_kernel(context):
    """Compile the example's kernel with the benchmark kernels' flags."""
    import pymic

    output = (context.kernel_dir / "libbench_heat_mpi.so").resolve()
    output.parent.mkdir(parents=True, exist_ok=True)
    command = [os.environ.get("CC", "cc"), "-std=c11", "-O3", "-march=native", "-fPIC",
               "-shared", "-fopenmp", "-Wall", "-Wextra", f"-I{pymic.get_include()}",
               "-o", str(output), str(EXAMPLE / "heat_mpi.c")]
    subprocess.run(command, check=True, capture_output=True, text=True)
    return str(output)


def _measure(library, n, steps, rounds):
    command, extra_env = _launch_command()
    env = dict(os.environ)
    env.update(extra_env)
    env.pop("PYMIC_DEVICES", None)
    with tempfile.TemporaryDirectory() as scratch:
        out = os.path.join(scratch, "b12.json")
        completed = subprocess.run(
            command + [sys.executable, str(pathlib.Path(__file__).resolve()), "--rank",
                       library, str(n), str(steps), str(rounds), out],
            capture_output=True, text=True, env=env, timeout=240, check=False)
        if completed.returncode != 0 or not os.path.exists(out):
            raise RuntimeError(f"mpirun exited with status {completed.returncode}: "
                               f"{completed.stderr.strip()[-400:]}")
        with open(out, encoding="utf-8") as result:
            return json.load(result)


def run(context):
    """Run B12 and judge its row.

    Parameters
    ----------
    context : Context
        Run options.

    Returns
    -------
    dict
        ``figures`` (per size: seconds per step for both contenders, the
        ratio, each rank's CPUs) and ``targets``.
    """
    import targets
    from timing import summarize

    reason = _mpi_unavailable()
    if reason:
        return {"figures": {"unavailable": reason},
                "targets": [targets.check("B12", GOAL, "not run", "not run", None, ">=", 1.0,
                                          note=reason)]}
    library = _build_kernel(context)
    figures, table = {}, []
    for n in context.pick(SIZES, QUICK_SIZES):
        # 0.05-0.2 s per turn on a 2-core machine at either size.
        steps = max(8, (2 ** 25) // (n * n)) if not context.quick else 4
        result = _measure(library, n, steps, context.pick(8, 2))
        if result["difference"] > 1e-12:
            raise AssertionError(f"n={n}: pymic's grid differs from NumPy's by "
                                 f"{result['difference']:.3e}")
        per_step = {name: summarize(values, 1.0 / steps)
                    for name, values in result["samples"].items()}
        ratio = per_step["numpy"]["median"] / per_step["pymic"]["median"]
        figures[str(n)] = {"seconds_per_step": per_step, "ratio": ratio, "steps": steps,
                           "cpus": result["cpus"], "rows_per_rank": result["rows_per_rank"]}
        table.append([f"{n} × {n}", targets.format_time(per_step["pymic"]["median"]),
                      targets.format_time(per_step["numpy"]["median"]), f"{ratio:.2f}×",
                      "; ".join(f"rank {r}: CPUs {cpus}" for r, cpus in enumerate(result["cpus"]))])
    largest = str(max(int(size) for size in figures))
    judged = figures[largest]
    row = targets.check(
        "B12", GOAL, f"{targets.format_time(judged['seconds_per_step']['pymic']['median'])}/step",
        f"NumPy {targets.format_time(judged['seconds_per_step']['numpy']['median'])}/step",
        judged["ratio"], ">=", 1.0,
        note=f"{largest} × {largest} grid; ratios at every size in the table")
    return {"figures": figures,
            "tables": [{"title": "Time per step, slowest of 2 ranks (median)",
                        "columns": ["grid", "pymic (host:auto)", "NumPy", "NumPy / pymic",
                                    "devices"],
                        "rows": table}],
            "notes": ["Each step: halo rows exchanged with mpi4py Sendrecv, one Jacobi sweep "
                      "of each rank's block (pymic: update_host/update_device of the halo rows "
                      "and the example's kernel; NumPy: the same expression as the serial "
                      "check of examples/heat_mpi). mpirun --bind-to none: host:auto splits "
                      "the cores by local rank."],
            "targets": [row]}


if __name__ == "__main__" and len(sys.argv) == 7 and sys.argv[1] == "--rank":
    rank_main(sys.argv[2], int(sys.argv[3]), int(sys.argv[4]), int(sys.argv[5]), sys.argv[6])
