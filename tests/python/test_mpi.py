"""PYMIC_DEVICES=host:auto and the MPI example.

The first tests set the launcher's variables by hand (no MPI needed) and
look at the device a rank gets.  The others run examples/heat_mpi under
`mpirun -np 2` (and 3): every rank offloads its block of a Jacobi stencil to
its own host:auto device, exchanges halo rows with mpi4py, and rank 0
compares the result with a serial NumPy run.  `make test` installs MPI
first (`make mpi`: Debian's OpenMPI and mpi4py); these tests skip only
where MPI cannot be had at all, and say why.
"""

import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

import pymic
from helpers import run_python

EXAMPLE_DIR = Path(__file__).resolve().parents[2] / "examples" / "heat_mpi"

LAUNCHER_VARIABLES = ("OMPI_COMM_WORLD_LOCAL_RANK", "OMPI_COMM_WORLD_LOCAL_SIZE",
                      "MPI_LOCALRANKID", "MPI_LOCALNRANKS", "SLURM_LOCALID", "SLURM_NODEID",
                      "SLURM_TASKS_PER_NODE", "SLURM_STEP_TASKS_PER_NODE")

SHOW_DEVICES = "import pymic; print([list(pymic.devices[i].cpus) for i in pymic.devices])"


def device_cpus_with(variables, layout="host:auto"):
    """The CPUs of each device of a fresh interpreter with these launcher variables."""
    env = {name: None for name in LAUNCHER_VARIABLES}
    env.update(variables)
    env["PYMIC_DEVICES"] = layout
    result = run_python(SHOW_DEVICES, env=env)
    assert result.returncode == 0, result.stderr
    return eval(result.stdout)  # a list of lists of ints, printed by the child


def test_host_auto_without_launcher_is_host():
    assert device_cpus_with({}) == device_cpus_with({}, layout="host")


@pytest.mark.parametrize("rank_var,size_var", [
    ("OMPI_COMM_WORLD_LOCAL_RANK", "OMPI_COMM_WORLD_LOCAL_SIZE"),
    ("MPI_LOCALRANKID", "MPI_LOCALNRANKS"),
    ("SLURM_LOCALID", "SLURM_STEP_TASKS_PER_NODE"),
])
def test_host_auto_gives_each_local_rank_its_share(rank_var, size_var):
    # The same shares as host*2 gives its two devices, one per rank.
    halves = device_cpus_with({}, layout="host*2")
    shares = [device_cpus_with({rank_var: str(rank), size_var: "2"}) for rank in (0, 1)]
    assert shares == [[halves[0]], [halves[1]]]


def test_host_auto_more_ranks_than_cores_shares_round_robin():
    cpus = device_cpus_with({}, layout="host")[0]
    ranks = len(cpus) + 1
    env = {"OMPI_COMM_WORLD_LOCAL_RANK": str(ranks - 1),
           "OMPI_COMM_WORLD_LOCAL_SIZE": str(ranks), "PYMIC_DEBUG": "1",
           "PYMIC_DEVICES": "host:auto"}
    result = run_python(SHOW_DEVICES, env=env)
    assert result.returncode == 0, result.stderr
    assert eval(result.stdout) == [[cpus[0]]]
    assert "ranks share CPUs round-robin" in result.stderr


def test_host_auto_bad_launcher_variable_names_it():
    env = {"PYMIC_DEVICES": "host:auto", "MPI_LOCALRANKID": "3", "MPI_LOCALNRANKS": "2"}
    result = run_python("import pymic", env=env)
    assert result.returncode != 0
    assert "OffloadError" in result.stderr
    assert "MPI_LOCALRANKID=3 is not a local rank below MPI_LOCALNRANKS=2" in result.stderr


# ------------------------------------------------------------- the example

def mpirun_command(ranks):
    """The launch command for `ranks` local ranks, or skip/fail saying why MPI is missing.

    Parameters
    ----------
    ranks : int
        Number of ranks.

    Returns
    -------
    tuple
        ``(command list, extra environment)``.
    """
    mpirun = shutil.which("mpirun")
    can_install = os.geteuid() == 0 and shutil.which("apt-get") is not None
    if mpirun is None:
        if can_install:
            pytest.fail("mpirun is missing although this machine can install it (root, "
                        "apt-get): `make mpi` (part of `make test`) should have")
        pytest.skip("no MPI: mpirun is not on PATH, and installing Debian's openmpi-bin "
                    "needs root and apt-get")
    try:
        import mpi4py  # noqa: F401
    except ImportError:
        if shutil.which("mpicc") or can_install:
            pytest.fail("mpi4py is not installed: `make mpi` (part of `make test`) builds it")
        pytest.skip("no mpi4py: it builds against mpicc, which is missing and cannot be "
                    "installed here (needs root and apt-get)")
    version = subprocess.run([mpirun, "--version"], capture_output=True, text=True).stdout
    command, env = [mpirun, "-np", str(ranks)], {}
    if "Open MPI" in version or "OpenRTE" in version:
        # More ranks than cores must be allowed; Open MPI refuses root unless
        # told (containers and CI run as root); CMA single-copy needs ptrace,
        # which containers often forbid.
        command.append("--oversubscribe")
        env = {"OMPI_ALLOW_RUN_AS_ROOT": "1", "OMPI_ALLOW_RUN_AS_ROOT_CONFIRM": "1",
               "OMPI_MCA_btl_vader_single_copy_mechanism": "none"}
    return command, env


@pytest.fixture(scope="module")
def heat_library():
    """Build the example kernels (a no-op when `make -C examples` already ran)."""
    result = subprocess.run(["make", "-C", str(EXAMPLE_DIR.parent), f"PYTHON={sys.executable}"],
                            capture_output=True, text=True)
    assert result.returncode == 0, result.stdout + result.stderr
    assert (EXAMPLE_DIR / "libheat_mpi.so").is_file()


def run_heat(ranks, launcher_args=(), args=("96", "40"), env=None):
    command, mpi_env = mpirun_command(ranks)
    child_env = dict(os.environ)
    child_env.update(mpi_env)
    child_env.update(env or {})
    for name in ("PYMIC_LIBRARY_PATH", "PYMIC_DEVICES"):
        child_env.pop(name, None)  # the script finds its library and sets host:auto itself
    result = subprocess.run(command + list(launcher_args) + [sys.executable, "heat_mpi.py", *args],
                            cwd=EXAMPLE_DIR, capture_output=True, text=True, env=child_env,
                            timeout=300)
    output = result.stdout + result.stderr
    assert result.returncode == 0, output
    assert "result matches NumPy: True" in result.stdout, output
    placements = dict(re.findall(r"^rank (\d+): .* \(CPUs \[([\d, ]*)\]\)$", result.stdout,
                                 re.MULTILINE))
    assert sorted(placements) == [str(rank) for rank in range(ranks)], output
    return {int(rank): [int(cpu) for cpu in cpus.split(",")]
            for rank, cpus in placements.items()}, result


def test_heat_mpi_kernel_compiles_without_warnings(tmp_path):
    result = subprocess.run(
        [os.environ.get("CC", "cc"), "-std=c11", "-O2", "-Wall", "-Wextra", "-Werror", "-fPIC",
         "-shared", "-fopenmp", f"-I{pymic.get_include()}", "-o", str(tmp_path / "lib.so"),
         str(EXAMPLE_DIR / "heat_mpi.c")], capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
    assert result.stderr == ""


# Unbound, host:auto splits the cores by local rank; with Open MPI's default
# binding (a core per rank for 2 ranks) it takes the binding as it is.
@pytest.mark.parametrize("launcher_args", [("--bind-to", "none"), ()],
                         ids=["unbound", "launcher-binding"])
def test_heat_mpi_two_ranks_match_numpy_on_disjoint_cores(heat_library, launcher_args):
    command, _ = mpirun_command(2)
    if "--oversubscribe" not in command and launcher_args:
        pytest.skip("--bind-to is an Open MPI option")
    placements, _ = run_heat(2, launcher_args)
    if len(os.sched_getaffinity(0)) >= 2:
        assert not set(placements[0]) & set(placements[1]), placements


def test_heat_mpi_uneven_blocks_and_three_ranks(heat_library):
    # 97 rows over 3 ranks (32, 32, 33); on 2 cores two ranks share one.
    command, _ = mpirun_command(3)
    launcher_args = ("--bind-to", "none") if "--oversubscribe" in command else ()
    placements, result = run_heat(3, launcher_args, args=("97", "30"),
                                  env={"PYMIC_DEBUG": "1"})
    cores = len(os.sched_getaffinity(0))
    if cores < 3:
        assert "ranks share CPUs round-robin" in result.stderr
        assert placements[2] == placements[0]
    assert "rows 64-96" in result.stdout
