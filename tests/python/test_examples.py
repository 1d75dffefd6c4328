"""Every example runs on its own, from its own directory, and prints a
result that matches NumPy."""

import os
import subprocess
import sys
from pathlib import Path

import pytest

import pymic

EXAMPLES_DIR = Path(__file__).resolve().parents[2] / "examples"
EXAMPLES = ["double_it", "dgemm", "data_transfers", "offload_array", "streams"]
# Examples whose kernels are C source inside the script (device.load_source).
SOURCE_EXAMPLES = ["compile_and_trace"]


@pytest.fixture(scope="session")
def built_examples():
    """Build the example kernels (a no-op when `make -C examples` already ran)."""
    result = subprocess.run(["make", "-C", str(EXAMPLES_DIR), f"PYTHON={sys.executable}"],
                            capture_output=True, text=True)
    assert result.returncode == 0, result.stdout + result.stderr
    return EXAMPLES_DIR


def run_example(examples_dir, name, *args):
    env = dict(os.environ)
    # The scripts must find their library in the working directory alone.
    env.pop("PYMIC_LIBRARY_PATH", None)
    return subprocess.run([sys.executable, f"{name}.py", *args], cwd=examples_dir / name,
                          capture_output=True, text=True, env=env, timeout=300)


@pytest.mark.parametrize("name", EXAMPLES)
def test_example_has_script_and_kernel(name):
    assert (EXAMPLES_DIR / name / f"{name}.py").is_file()
    assert (EXAMPLES_DIR / name / f"{name}.c").is_file()


def blas_flags():
    """Compiler and linker flags for scipy-openblas32, as examples/Makefile uses."""
    import scipy_openblas32 as openblas
    libdir = openblas.get_lib_dir()
    return [f"-I{openblas.get_include_dir()}", "-DBLAS_SYMBOL_PREFIX=scipy_",
            f"-L{libdir}", f"-l{openblas.get_library()}", f"-Wl,-rpath,{libdir}"]


@pytest.mark.parametrize("name", EXAMPLES)
def test_example_kernel_compiles_without_warnings(tmp_path, name):
    command = [os.environ.get("CC", "cc"), "-std=c11", "-O2", "-Wall", "-Wextra", "-Werror",
               "-fPIC", "-shared", "-fopenmp", f"-I{pymic.get_include()}",
               "-o", str(tmp_path / f"lib{name}.so"), str(EXAMPLES_DIR / name / f"{name}.c")]
    if name == "dgemm":
        command += blas_flags()
    result = subprocess.run(command, capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
    assert result.stderr == ""


@pytest.mark.parametrize("name", EXAMPLES)
def test_example_runs_and_matches_numpy(built_examples, name):
    result = run_example(built_examples, name)
    output = result.stdout + result.stderr
    assert result.returncode == 0, output
    assert "result matches NumPy: True" in result.stdout, output
    assert "False" not in result.stdout, output


def test_double_it_prints_input_and_doubled_output(built_examples):
    result = run_example(built_examples, "double_it")
    assert result.returncode == 0, result.stderr
    before, _, after = result.stdout.partition("output:")
    assert "input:" in before
    # The input runs 1..32; the output 2..64.
    assert "32." in before and "64." not in before
    assert "64." in after


def test_dgemm_reports_both_variants_and_numpy(built_examples):
    result = run_example(built_examples, "dgemm", "256")
    assert result.returncode == 0, result.stdout + result.stderr
    for line in ("numpy.dot", "copy-in/copy-out", "bound arrays", "GFLOP/s"):
        assert line in result.stdout
    assert "copy-in/copy-out result matches NumPy: True" in result.stdout
    assert "bound-array result matches NumPy: True" in result.stdout


def test_example_fails_without_its_library(tmp_path):
    # A script run where its library is not found must fail loudly, not
    # print a result: copy double_it.py alone into an empty directory.
    script = tmp_path / "double_it.py"
    script.write_text((EXAMPLES_DIR / "double_it" / "double_it.py").read_text())
    env = dict(os.environ)
    env.pop("PYMIC_LIBRARY_PATH", None)
    result = subprocess.run([sys.executable, "double_it.py"], cwd=tmp_path,
                            capture_output=True, text=True, env=env, timeout=120)
    assert result.returncode != 0
    assert "OffloadError" in result.stderr
    assert "libdouble_it.so" in result.stderr


@pytest.mark.parametrize("name", SOURCE_EXAMPLES)
def test_source_example_runs_matches_numpy_and_traces(tmp_path, name):
    import json
    trace = tmp_path / "trace.json"
    env = dict(os.environ, PYMIC_CACHE_DIR=str(tmp_path / "cache"))
    env.pop("PYMIC_LIBRARY_PATH", None)
    result = subprocess.run([sys.executable, f"{name}.py", str(trace)],
                            cwd=EXAMPLES_DIR / name, capture_output=True, text=True, env=env,
                            timeout=300)
    output = result.stdout + result.stderr
    assert result.returncode == 0, output
    assert "result matches NumPy: True" in result.stdout, output
    assert "a cache hit" in result.stdout
    events = json.loads(trace.read_text())["traceEvents"]
    tracks = {e["tid"] for e in events if e.get("name") == "stage_sqrt"}
    assert len(tracks) == 2
