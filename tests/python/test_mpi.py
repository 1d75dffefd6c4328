"""PYMIC_DEVICES=host:auto and the MPI example.

The first tests set the launcher's variables by hand (no MPI needed) and
look at the device a rank gets.  The others run examples/heat_mpi under
`mpirun -np 2` (and 3): every rank offloads its block of a Jacobi stencil to
its own host:auto device, exchanges halo rows with mpi4py, and rank 0
compares the result with a serial NumPy run.  `make test` installs MPI
first (`make mpi`: Debian's OpenMPI and mpi4py); these tests skip only
where MPI cannot be had at all, and say why.
"""

import json
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

SHOW_DEVICES = ("import pymic; print(([list(pymic.devices[i].cpus) for i in pymic.devices], "
                "pymic.local_device().device_id))")


def device_cpus_with(variables, layout="host:auto"):
    """The CPUs of each device of a fresh interpreter with these launcher variables,
    and the number of its own device (``pymic.local_device()``)."""
    env = {name: None for name in LAUNCHER_VARIABLES}
    env.update(variables)
    env["PYMIC_DEVICES"] = layout
    result = run_python(SHOW_DEVICES, env=env)
    assert result.returncode == 0, result.stderr
    return eval(result.stdout)  # ([[cpu, ...], ...], int), printed by the child


def test_host_auto_without_launcher_is_host():
    assert device_cpus_with({}) == device_cpus_with({}, layout="host")


@pytest.mark.parametrize("rank_var,size_var", [
    ("OMPI_COMM_WORLD_LOCAL_RANK", "OMPI_COMM_WORLD_LOCAL_SIZE"),
    ("MPI_LOCALRANKID", "MPI_LOCALNRANKS"),
    ("SLURM_LOCALID", "SLURM_STEP_TASKS_PER_NODE"),
])
def test_host_auto_gives_every_local_rank_the_same_list(rank_var, size_var):
    # Both ranks see host*2's two devices, and each owns the one at its
    # local rank (pyMIC-era codes take devices[local_rank]).
    halves, _ = device_cpus_with({}, layout="host*2")
    seen = [device_cpus_with({rank_var: str(rank), size_var: "2"}) for rank in (0, 1)]
    assert seen == [(halves, 0), (halves, 1)]


def test_host_auto_more_ranks_than_cores_shares_round_robin():
    cpus = device_cpus_with({}, layout="host")[0][0]
    ranks = len(cpus) + 1
    env = {"OMPI_COMM_WORLD_LOCAL_RANK": str(ranks - 1),
           "OMPI_COMM_WORLD_LOCAL_SIZE": str(ranks), "PYMIC_DEBUG": "1",
           "PYMIC_DEVICES": "host:auto"}
    result = run_python(SHOW_DEVICES, env=env)
    assert result.returncode == 0, result.stderr
    assert eval(result.stdout) == ([[cpus[r % len(cpus)]] for r in range(ranks)], ranks - 1)
    assert "ranks share CPUs round-robin" in result.stderr


def test_local_device_groups_ranks_over_host_n():
    # host*2 shared by 4 ranks: ranks 0-1 on device 0, ranks 2-3 on device 1.
    owners = [device_cpus_with({"MPI_LOCALRANKID": str(rank), "MPI_LOCALNRANKS": "4"},
                               layout="host*2")[1] for rank in range(4)]
    assert owners == [0, 0, 1, 1]
    assert device_cpus_with({}, layout="host*2")[1] == 0


def test_local_device_names_a_bad_launcher_variable():
    # host*2 ignores the launcher; only asking for the rank's device needs it.
    env = {"PYMIC_DEVICES": "host*2", "OMPI_COMM_WORLD_LOCAL_RANK": "x",
           "OMPI_COMM_WORLD_LOCAL_SIZE": "2"}
    code = ("import pymic\nprint(len(pymic.devices))\ntry:\n    pymic.local_device()\n"
            "except pymic.OffloadError as error:\n    print(error)\n"
            "print(pymic.devices[0].get_default_stream() is not None)")
    result = run_python(code, env=env)
    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    assert lines[0] == "2"
    assert 'OMPI_COMM_WORLD_LOCAL_RANK="x" is not a non-negative integer' in lines[1]
    assert lines[2] == "True"  # pymic stays usable


def test_host_auto_bad_launcher_variable_names_it():
    env = {"PYMIC_DEVICES": "host:auto", "MPI_LOCALRANKID": "3", "MPI_LOCALNRANKS": "2"}
    result = run_python("import pymic", env=env)
    assert result.returncode != 0
    assert "OffloadError" in result.stderr
    assert "MPI_LOCALRANKID=3 is not a local rank below MPI_LOCALNRANKS=2" in result.stderr


# ------------------------------------------------------------- the example

def mpirun_command(ranks, mpi4py=True):
    """The launch command for `ranks` local ranks, or skip/fail saying why MPI is missing.

    Parameters
    ----------
    ranks : int
        Number of ranks.
    mpi4py : bool
        Whether the program run needs mpi4py too.

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
        if mpi4py:
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


# ------------------------------------------- devices[local_rank] under mpirun

# What a pyMIC-era MPI code does (PyFR: device-id = local-rank): take
# devices[local_rank] from a list every rank of the node sees alike, and
# run kernels there.  Each rank prints one JSON line: its device list, the
# CPUs its kernel's OpenMP team may run on (the union of the team's
# affinity masks, from omp_report) and what exists in the process (threads,
# device processes) before and after it asked about the other ranks'
# devices.  No MPI calls: the launcher's local rank is all it needs.
LOCAL_RANK_PROGRAM = """
import json, os, sys
import numpy as np
import pymic

def threads():
    return len(os.listdir("/proc/self/task"))

def children():
    count = 0
    for task in os.listdir("/proc/self/task"):
        with open(f"/proc/self/task/{task}/children") as listing:
            count += len(listing.read().split())
    return count

local_rank = int(os.environ.get("OMPI_COMM_WORLD_LOCAL_RANK",
                                os.environ.get("MPI_LOCALRANKID", "-1")))
device = pymic.devices[local_rank]
assert device is pymic.local_device(), (device, pymic.local_device())
at_start = threads(), children()
others = [(d.name, d.cpus, d.memory_total, d.memory_used)
          for i, d in pymic.devices.items() if i != local_rank]
for i in pymic.devices:
    if i != local_rank:
        pymic.devices[i].sync()
after_queries = threads(), children()
library = device.load_library(sys.argv[1])
stream = device.get_default_stream()
report = np.zeros(5, dtype=np.int64)
stream.invoke(library.omp_report, report)
stream.sync()
team_cpus = [cpu for cpu in range(63) if int(report[4]) >> cpu & 1]
# One write: mpirun forwards the ranks' output as it comes, and print()
# under PYTHONUNBUFFERED writes a line and its end apart.
os.write(1, (json.dumps({"local_rank": local_rank, "device": device.device_id,
                  "names": [d.name for d in pymic.devices.values()],
                  "cpus": device.cpus, "team_cpus": team_cpus, "kind": device.kind,
                  "at_start": at_start, "after_queries": after_queries,
                  "children": children()}) + "\\n").encode())
"""


@pytest.mark.parametrize("kind", ["host", "proc"])
@pytest.mark.parametrize("launcher_args", [("--bind-to", "none"), ()],
                         ids=["unbound", "launcher-binding"])
def test_two_ranks_take_devices_local_rank_on_disjoint_cores(kernel_dir, tmp_path, kind,
                                                             launcher_args):
    if len(os.sched_getaffinity(0)) < 2:
        pytest.skip("two ranks need two cores to run on disjoint ones")
    command, mpi_env = mpirun_command(2, mpi4py=False)
    if "--oversubscribe" not in command and launcher_args:
        pytest.skip("--bind-to is an Open MPI option")
    program = tmp_path / "local_rank.py"
    program.write_text(LOCAL_RANK_PROGRAM)
    env = dict(os.environ)
    env.update(mpi_env)
    env.pop("PYMIC_DEBUG", None)
    command += list(launcher_args) + ["-x", f"PYMIC_DEVICES={kind}:auto"] \
        if "--oversubscribe" in command else ["-genv", "PYMIC_DEVICES", f"{kind}:auto"]
    result = subprocess.run(command + [sys.executable, str(program),
                                       str(kernel_dir / "libpymictest.so")],
                            cwd=tmp_path, capture_output=True, text=True, env=env, timeout=300)
    output = result.stdout + result.stderr
    assert result.returncode == 0, output
    ranks = sorted((json.loads(line) for line in result.stdout.splitlines()
                    if line.startswith("{")), key=lambda rank: rank["local_rank"])
    assert [rank["local_rank"] for rank in ranks] == [0, 1], output
    # One list, the same on both ranks; each took the entry at its local rank.
    assert len(ranks[0]["names"]) == 2 and ranks[0]["names"] == ranks[1]["names"], output
    for rank in ranks:
        assert rank["device"] == rank["local_rank"] and rank["kind"] == kind
        # The kernel's team ran on its device's cores only.
        assert rank["team_cpus"] and set(rank["team_cpus"]) <= set(rank["cpus"]), rank
        # Asking about the other rank's device set nothing up for it.
        assert rank["after_queries"] == rank["at_start"], rank
    assert not set(ranks[0]["team_cpus"]) & set(ranks[1]["team_cpus"]), ranks
    if kind == "proc":
        # One device process per rank: its own; the other rank's entry
        # never started one here.
        assert [rank["at_start"][1] for rank in ranks] == [1, 1], ranks
        assert [rank["children"] for rank in ranks] == [1, 1], ranks


# ------------------------------------------------------------- MPI devices

# PYMIC_DEVICES=mpi: devices that are pymic-device ranks, started in the
# same job (MPMD) or spawned by the program.  These need pymic built with
# MPI (libpymic_mpi.so; `make test` builds it after `make mpi`).
PACKAGE_DIR = Path(pymic.__file__).resolve().parent
DEVICE_PROGRAM = PACKAGE_DIR / "pymic-device"


def mpi_device_command(hosts, devices=0, mpi4py=True):
    """The launch command of `hosts` host ranks (and `devices` pymic-device ranks
    appended by the caller after ``":"``), or skip/fail saying why it cannot run.

    Parameters
    ----------
    hosts : int
        Host ranks.
    devices : int
        pymic-device ranks (0: none, the program spawns its devices).
    mpi4py : bool
        Whether the host program needs mpi4py.

    Returns
    -------
    tuple
        ``(command list before the host program, device part, environment)``.
    """
    command, env = mpirun_command(hosts, mpi4py=mpi4py)
    if not (PACKAGE_DIR / "libpymic_mpi.so").exists():
        if shutil.which("mpicc"):
            pytest.fail("pymic was built without its MPI device although mpicc exists: "
                        "`make test` rebuilds it after `make mpi`")
        pytest.skip("pymic was built without MPI (no mpicc): no MPI device")
    if "--oversubscribe" not in command:
        pytest.skip("MPI devices are tested with Open MPI's mpirun")
    command += ["--bind-to", "none"]
    devices_part = [":", "-np", str(devices), str(DEVICE_PROGRAM)] if devices else []
    return command, devices_part, env


def run_mpi_job(command, env, cwd, timeout=300):
    child_env = dict(os.environ)
    child_env.update(env)
    child_env.pop("PYMIC_LIBRARY_PATH", None)
    return subprocess.run(command, cwd=cwd, capture_output=True, text=True, env=child_env,
                          timeout=timeout)


def run_mpi_program(tmp_path, source, hosts, devices, mpi4py=True, layout="mpi"):
    """Run `source` as the host program of `hosts` ranks with ``PYMIC_DEVICES`` set
    to `layout` and `devices` pymic-device ranks (0: spawned); assert it succeeded.

    Returns
    -------
    tuple
        ``(completed process, its stdout and stderr together)``.
    """
    command, device_part, env = mpi_device_command(hosts, devices=devices, mpi4py=mpi4py)
    env["PYMIC_DEVICES"] = layout
    program = tmp_path / "program.py"
    program.write_text(source)
    result = run_mpi_job(command + [sys.executable, str(program)] + device_part, env, tmp_path)
    output = result.stdout + result.stderr
    assert result.returncode == 0, output
    return result, output


def test_heat_mpi_two_host_ranks_each_offload_to_their_own_mpi_device(heat_library):
    # mpirun -np 2 python heat_mpi.py : -np 2 pymic-device: the stencil runs
    # on the host ranks (pymic.mpi.host_comm()), each offloading to a device
    # rank of its own.
    command, devices, env = mpi_device_command(2, devices=2)
    env.update({"PYMIC_DEVICES": "mpi", "PYMIC_DEBUG": "1"})
    result = run_mpi_job(command + [sys.executable, "heat_mpi.py", "64", "20"] + devices, env,
                         EXAMPLE_DIR)
    output = result.stdout + result.stderr
    assert result.returncode == 0, output
    assert "on 2 ranks" in result.stdout and "result matches NumPy: True" in result.stdout
    # Each host rank's device 0 is a different device rank (2 and 3 of the
    # world: the host ranks are 0 and 1).
    served_by = re.findall(r"device 0: MPI device rank (\d+) drives", result.stderr)
    assert sorted(map(int, served_by)) == [2, 3], output


HOST_COMM_PROGRAM = """
import sys
import numpy as np
import pymic, pymic.mpi
from mpi4py import MPI
comm = pymic.mpi.host_comm()
stream = pymic.devices[0].get_default_stream()
data = stream.bind(np.full(4, float(comm.Get_rank() + 1)))
data.update_host()
stream.sync()
total = comm.allreduce(float(data.array.sum()))
sys.stdout.write(f"rank {comm.Get_rank()} of {comm.Get_size()} "
                 f"(world {MPI.COMM_WORLD.Get_size()}): {pymic.devices[0].kind} {total}\\n")
"""


@pytest.mark.parametrize("devices", [0, 2], ids=["spawned", "mpmd"])
def test_host_comm_holds_the_host_ranks_only(tmp_path, devices):
    result, output = run_mpi_program(tmp_path, HOST_COMM_PROGRAM, 2, devices)
    world = 2 + devices  # spawned devices are not in MPI_COMM_WORLD
    # (mpirun forwards each rank's output as it comes: lines may run together)
    lines = sorted(re.findall(r"rank \d+ of \d+ \(world \d+\): \w+ [\d.]+", result.stdout))
    # (1 + 2) * 4 summed over both ranks' device data.
    assert lines == [f"rank {r} of 2 (world {world}): mpi 12.0" for r in (0, 1)], output


ROUND_TRIP_PROGRAM = """
import numpy as np
import pymic, pymic.mpi
device = pymic.devices[0]
seconds = pymic.mpi.round_trip(device, 2000)
assert 0 < seconds < 0.1, seconds
for words, error in ((0, ValueError), (100_000_001, ValueError), (True, TypeError),
                     (1.5, TypeError)):
    try:
        pymic.mpi.round_trip(device, words)
    except error as caught:
        print("refused:", caught)
    else:
        raise SystemExit(f"round_trip accepted {words!r}")
# The device goes on as before: the echo's words never reach a stream.
stream = device.get_default_stream()
print("after:", stream.bind(np.arange(4.0)).array.sum(), pymic.mpi.round_trip(device, 10) > 0)
"""


@pytest.mark.parametrize("devices", [0, 1], ids=["spawned", "mpmd"])
def test_round_trip_pings_the_device_process(tmp_path, devices):
    # pymic.mpi.round_trip: a one-word ping-pong between this process and
    # the device's (B13's peer); bad word counts are refused before any
    # message, and the device works on after it.
    result, output = run_mpi_program(tmp_path, ROUND_TRIP_PROGRAM, 1, devices, mpi4py=False)
    assert result.stdout.count("refused:") == 4, output
    assert "after: 6.0 True" in result.stdout, output


def test_round_trip_of_a_device_that_is_not_mpi_says_so():
    import pymic.mpi

    device = pymic.devices[0]
    if device.kind == "mpi":
        pytest.skip("device 0 of this run is an MPI device")
    with pytest.raises(pymic.OffloadError, match="not an MPI device"):
        pymic.mpi.round_trip(device)


TOO_FEW_PROGRAM = """
import numpy as np
import pymic
stream = pymic.devices[0].get_default_stream()
print("device 0 works:", stream.bind(np.ones(3)).array.sum())
try:
    pymic.devices[1].get_default_stream().bind(np.ones(3))
except pymic.OffloadError as error:
    print("device 1:", error)
"""


def test_more_mpi_devices_than_device_ranks_says_so(tmp_path):
    result, output = run_mpi_program(tmp_path, TOO_FEW_PROGRAM, 1, 1, mpi4py=False,
                                     layout="mpi*2")
    assert "device 0 works: 3.0" in result.stdout
    assert "PYMIC_DEVICES asks for 2 MPI devices" in result.stderr, output
    assert "no device rank left for it" in result.stdout, output


def test_mpi4py_with_a_low_thread_level_is_a_clear_error(tmp_path):
    mpi_device_command(1)  # skips where MPI devices cannot run
    code = ("import mpi4py\nmpi4py.rc.thread_level = 'funneled'\nfrom mpi4py import MPI\n"
            "import numpy as np, pymic\ntry:\n"
            "    pymic.devices[0].get_default_stream().bind(np.ones(2))\n"
            "except pymic.OffloadError as error:\n    print(error)\n")
    _, env = mpirun_command(1)
    env["PYMIC_DEVICES"] = "mpi"
    result = run_python(code, env=env)
    assert result.returncode == 0, result.stderr
    assert "MPI_THREAD_FUNNELED" in result.stdout
    assert "MPI devices need MPI_THREAD_MULTIPLE" in result.stdout


RESPAWN_PROGRAM = """
import numpy as np
import pymic

def doubled(stream, values):
    bound = stream.bind(values)
    total = bound + bound
    total.update_host()
    stream.sync()
    return total.array

device = pymic.devices[0]
assert device.kind == "mpi", device.kind
stream = device.get_default_stream()
kept = stream.bind(np.arange(4.0))      # memory of the first device process
for attempt in range(2):                  # every time, not only once
    lib = device.load_library(LIBRARY)
    stream.invoke(lib.fault_segv)
    try:
        stream.sync()
    except pymic.OffloadError as error:
        message = str(error)
    else:
        raise AssertionError("the crash raised nothing")
    assert "MPI device process" in message and "fault_segv" in message, message
    assert pymic._engine.device_lost(0) is not None
    device.reset()                        # a new device process
    assert pymic._engine.device_lost(0) is None
    assert (doubled(stream, np.arange(4.0)) == 2 * np.arange(4.0)).all()
    other = device.create_stream()        # new streams work too
    assert (doubled(other, np.ones(3)) == 2.0).all()
    del other
del kept                                  # freed: its memory went with its process
print("python goes on")
"""


def test_reset_spawns_a_new_process_for_a_spawned_device_whose_process_ended(kernel_dir):
    # A kernel that segfaults on the default local host device ends the
    # device process; reset() spawns a new pymic-device in its place.
    _, _, env = mpi_device_command(1, mpi4py=False)
    env["PYMIC_DEVICES"] = "mpi"
    program = f"LIBRARY = {str(kernel_dir / 'libpymictest.so')!r}\n" + RESPAWN_PROGRAM
    result = run_python(program, env=env, timeout=120)
    output = result.stdout + result.stderr
    assert result.returncode == 0, output
    assert "python goes on" in result.stdout, output


MPMD_RESET_PROGRAM = """
import os
import pymic
device = pymic.devices[0]
stream = device.get_default_stream()
lib = device.load_library(LIBRARY)
stream.invoke(lib.fault_segv)
try:
    stream.sync()
except pymic.OffloadError as error:
    print("crash:", error, flush=True)
try:
    device.reset()
except pymic.OffloadError as error:
    print("reset:", error, flush=True)
else:
    print("reset: no error", flush=True)
print("python goes on", flush=True)
# MPI_Finalize would wait for the rank that died: leave without it.
os._exit(0)
"""


def test_reset_cannot_replace_a_device_rank_of_an_mpmd_launch(kernel_dir, tmp_path):
    # Open MPI ends the whole job when a rank dies, unless told not to: with
    # that, the host goes on and reset() says the rank cannot be replaced.
    command, device_part, env = mpi_device_command(1, devices=1, mpi4py=False)
    env["PYMIC_DEVICES"] = "mpi"
    program = tmp_path / "mpmd_reset.py"
    program.write_text(f"LIBRARY = {str(kernel_dir / 'libpymictest.so')!r}\n"
                       + MPMD_RESET_PROGRAM)
    command = command + ["--mca", "orte_abort_on_non_zero_status", "0"]
    result = run_mpi_job(command + [sys.executable, str(program)] + device_part, env, tmp_path,
                         timeout=120)
    output = result.stdout + result.stderr
    assert "crash: " in result.stdout and "fault_segv" in result.stdout, output
    assert "reset: " in result.stdout and "cannot be replaced" in result.stdout, output
    assert "python goes on" in result.stdout, output
