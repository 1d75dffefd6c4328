"""`make bench` provides what B12 needs (Open MPI and mpi4py, through the
top-level `mpi` target) before it runs the suite."""

import os
import pathlib
import shutil
import subprocess

import pytest

REPOSITORY = pathlib.Path(__file__).resolve().parents[2]


@pytest.mark.skipif(shutil.which("make") is None, reason="make is not installed")
def test_make_bench_sets_up_mpi_before_the_suite():
    # -n prints what would run; -W marks requirements-mpi.txt as changed, so
    # the MPI set-up shows even where it is already done.
    env = {name: value for name, value in os.environ.items()
           if name not in ("MAKEFLAGS", "MFLAGS", "MAKELEVEL")}
    result = subprocess.run(["make", "-n", "-W", "requirements-mpi.txt", "bench"],
                            cwd=REPOSITORY, env=env, capture_output=True, text=True,
                            timeout=300)
    assert result.returncode == 0, result.stdout + result.stderr
    output = result.stdout
    mpi_setup = output.find("-r requirements-mpi.txt")
    suite = output.find("-C benchmarks")
    assert mpi_setup != -1, output
    assert suite != -1, output
    assert mpi_setup < suite
