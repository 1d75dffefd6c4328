"""heat_mpi: a 2-D heat equation (Jacobi) on MPI ranks, each offloading its
block of the grid to its own pymic device.

    mpirun -np 2 python heat_mpi.py [N [STEPS]]

(as root, Open MPI also wants ``--allow-run-as-root``.)

The N x N grid (plus a fixed edge) is cut into blocks of rows, one per rank.
Every rank keeps its block on its device and, each step,

1. copies its first and last rows back from the device (``update_host`` of
   two row views of the bound block),
2. swaps them with its neighbours' (mpi4py ``Sendrecv``) into its halo rows,
3. copies the halo rows to the device (``update_device``) and runs one
   Jacobi sweep there (``jacobi_sweep`` in heat_mpi.c).

With MPI devices instead -- ranks of ``pymic-device`` in the same job,
each host rank offloading to its own::

    PYMIC_DEVICES=mpi mpirun -np 2 python heat_mpi.py : -np 2 .../pymic/pymic-device

the halo exchange runs on ``pymic.mpi.host_comm()``, the host ranks only
(``MPI_COMM_WORLD`` holds the device ranks too).

The devices are ``PYMIC_DEVICES=host:auto`` (set below unless the
environment says otherwise): every rank of a node sees the same list, one
device per local rank, each an equal, disjoint share of the node's cores
(or the cores the launcher bound the rank to), and takes its own with
``pymic.local_device()`` -- the same as ``pymic.devices[local_rank]``,
which is how pyMIC-era codes pick theirs.  At the end rank 0 gathers the blocks
and compares them with the same steps done serially with NumPy.  Run it
from any directory after ``make -C examples``.
"""

import os
import sys
import time

# Before pymic is imported: one device per rank of the node.
os.environ.setdefault("PYMIC_DEVICES", "host:auto")

import numpy as np  # noqa: E402
from mpi4py import MPI  # noqa: E402

import pymic  # noqa: E402
import pymic.mpi  # noqa: E402

# The kernel library is built beside this script (make -C examples); it is
# loaded from there, so the script runs from any working directory.
HERE = os.path.dirname(os.path.abspath(__file__))


def initial_grid(n):
    """Return the starting grid: random interior, a hot top edge.

    Parameters
    ----------
    n : int
        Interior points per side.

    Returns
    -------
    numpy.ndarray
        ``(n + 2, n + 2)`` float64; the outer rows and columns are the fixed
        edge (top 1.0, left 0.5, the others 0.0).
    """
    grid = np.zeros((n + 2, n + 2))
    grid[1:-1, 1:-1] = np.random.default_rng(12).random((n, n))
    grid[0, :] = 1.0
    grid[1:, 0] = 0.5
    return grid


def jacobi_numpy(grid, steps):
    """Run `steps` Jacobi sweeps over the whole grid with NumPy.

    Parameters
    ----------
    grid : numpy.ndarray
        The starting grid, edge included (not modified).
    steps : int
        Number of sweeps.

    Returns
    -------
    numpy.ndarray
        The grid after the sweeps.
    """
    current, following = grid.copy(), grid.copy()
    for _ in range(steps):
        following[1:-1, 1:-1] = 0.25 * (current[:-2, 1:-1] + current[2:, 1:-1]
                                        + current[1:-1, :-2] + current[1:-1, 2:])
        current, following = following, current
    return current


def block_rows(n, size):
    """Split `n` interior rows over `size` ranks as evenly as possible.

    Parameters
    ----------
    n : int
        Interior rows of the grid.
    size : int
        Number of ranks.

    Returns
    -------
    list of int
        The first interior row of every rank, then `n`: rank r owns rows
        ``starts[r]`` to ``starts[r + 1] - 1``.
    """
    return [r * n // size for r in range(size)] + [n]


def exchange_halos(comm, block, rows, above, below):
    """Swap boundary rows with the neighbouring ranks, on the host side.

    Parameters
    ----------
    comm : mpi4py.MPI.Comm
        The communicator.
    block : pymic.OffloadArray
        This rank's block, ``rows + 2`` rows with halos, bound to its device.
    rows : int
        Interior rows of the block.
    above, below : int
        Neighbour ranks, ``MPI.PROC_NULL`` at the grid's edge.
    """
    stream = block.stream
    block[1].update_host()
    block[rows].update_host()
    stream.sync()
    host = block.array
    comm.Sendrecv(host[1], dest=above, recvbuf=host[rows + 1], source=below)
    comm.Sendrecv(host[rows], dest=below, recvbuf=host[0], source=above)
    # Only halos that came from a neighbour change; the grid's edge stays.
    if above != MPI.PROC_NULL:
        block[0].update_device()
    if below != MPI.PROC_NULL:
        block[rows + 1].update_device()


def main(argv):
    """Run the distributed stencil and check it against NumPy.

    Parameters
    ----------
    argv : list of str
        ``[N [STEPS]]``.

    Returns
    -------
    int
        0 if rank 0 found the result equal to NumPy's, 1 otherwise (the
        same on every rank).
    """
    n = int(argv[0]) if argv else 256
    steps = int(argv[1]) if len(argv) > 1 else 200
    device = pymic.local_device()  # this rank's share: devices[local rank]
    # On MPI devices the world holds the device ranks too: the stencil's
    # ranks are the host ranks.
    comm = pymic.mpi.host_comm() if device.kind == "mpi" else MPI.COMM_WORLD
    rank, size = comm.Get_rank(), comm.Get_size()
    if n < size:
        raise SystemExit(f"heat_mpi: {n} rows cannot be split over {size} ranks")

    library = device.load_library(os.path.join(HERE, "libheat_mpi.so"))
    stream = device.get_default_stream()

    starts = block_rows(n, size)
    first, rows, cols = starts[rank], starts[rank + 1] - starts[rank], n + 2
    grid = initial_grid(n)
    # This rank's interior rows plus one halo row on either side.
    current = stream.bind(grid[first:first + rows + 2].copy())
    following = stream.bind(current.array.copy())  # same edges; the interior is overwritten
    change = stream.bind(np.zeros(1))
    above = rank - 1 if rank > 0 else MPI.PROC_NULL
    below = rank + 1 if rank < size - 1 else MPI.PROC_NULL

    comm.Barrier()
    started = time.perf_counter()
    for _ in range(steps):
        exchange_halos(comm, current, rows, above, below)
        stream.invoke(library.jacobi_sweep, current, following, rows, cols, change)
        current, following = following, current
    current.update_host()
    change.update_host()
    stream.sync()
    largest_change = comm.allreduce(float(change.array[0]), op=MPI.MAX)
    elapsed = comm.allreduce(time.perf_counter() - started, op=MPI.MAX)

    placement = comm.gather(f"rank {rank}: rows {first}-{first + rows - 1} on {device.name} "
                            f"(CPUs {device.cpus})", root=0)
    result = np.empty((n, cols)) if rank == 0 else None
    counts = [(starts[r + 1] - starts[r]) * cols for r in range(size)]
    offsets = [starts[r] * cols for r in range(size)]
    comm.Gatherv(current.array[1:rows + 1], [result, counts, offsets, MPI.DOUBLE], root=0)

    matches = True
    if rank == 0:
        print(f"heat_mpi: {n} x {n} grid, {steps} steps on {size} ranks")
        for line in placement:
            print(line)
        started = time.perf_counter()
        expected = jacobi_numpy(grid, steps)[1:-1]
        serial = time.perf_counter() - started
        difference = float(np.max(np.abs(result - expected)))
        matches = difference <= 1e-12
        print(f"largest change in the last step: {largest_change:.3e}")
        print(f"{size} ranks with pymic: {elapsed:.3f} s; serial NumPy: {serial:.3f} s")
        print(f"largest difference from NumPy: {difference:.3e}")
        print("result matches NumPy:", matches)
    return 0 if comm.bcast(matches, root=0) else 1


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
