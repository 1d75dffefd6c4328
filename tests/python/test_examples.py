"""Every example runs on its own, from any working directory, and prints a
result that matches NumPy; examples/Makefile finds a BLAS for dgemm or
says why it cannot."""

import os
import shutil
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


def run_example(examples_dir, name, *args, cwd=None):
    """Run an example's script from `cwd` (default: the script's directory)."""
    env = dict(os.environ)
    # The scripts must find their library beside themselves, unaided.
    env.pop("PYMIC_LIBRARY_PATH", None)
    script = examples_dir / name / f"{name}.py"
    return subprocess.run([sys.executable, str(script), *args],
                          cwd=examples_dir / name if cwd is None else cwd,
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


@pytest.mark.parametrize("name", EXAMPLES + SOURCE_EXAMPLES)
@pytest.mark.parametrize("where", ["repository root", "elsewhere"])
def test_example_runs_from_any_working_directory(built_examples, tmp_path, monkeypatch,
                                                name, where):
    cwd = built_examples.parent if where == "repository root" else tmp_path
    extra_args = []
    if name in SOURCE_EXAMPLES:
        monkeypatch.setenv("PYMIC_CACHE_DIR", str(tmp_path / "cache"))
        extra_args = [str(tmp_path / "trace.json")]
    result = run_example(built_examples, name, *extra_args, cwd=cwd)
    output = result.stdout + result.stderr
    assert result.returncode == 0, output
    assert "result matches NumPy: True" in result.stdout, output


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


# ------------------------------------------------- examples/Makefile's BLAS

def python_without_scipy_openblas(directory):
    """An interpreter command (this one) for which `import scipy_openblas32`
    fails, as in a venv made with a plain `pip install pymic-offload`."""
    shadow = directory / "shadow"
    shadow.mkdir()
    (shadow / "scipy_openblas32.py").write_text(
        "raise ImportError('scipy_openblas32 is hidden by the test')\n")
    wrapper = directory / "python"
    wrapper.write_text(f'#!/bin/sh\nPYTHONPATH="{shadow}${{PYTHONPATH:+:$PYTHONPATH}}" '
                       f'exec "{sys.executable}" "$@"\n')
    wrapper.chmod(0o755)
    return wrapper


def copy_of_examples(directory):
    """A copy of examples/ without built libraries, to build in."""
    copy = directory / "examples"
    shutil.copytree(EXAMPLES_DIR, copy, ignore=shutil.ignore_patterns("*.so", "__pycache__"))
    return copy


def make_dgemm(examples, python, **variables):
    return subprocess.run(["make", "-C", str(examples), f"PYTHON={python}",
                           *(f"{name}={value}" for name, value in variables.items()),
                           "dgemm/libdgemm.so"],
                          capture_output=True, text=True, timeout=300)


def test_examples_makefile_without_a_blas_stops_and_says_how(tmp_path):
    examples = copy_of_examples(tmp_path)
    python = python_without_scipy_openblas(tmp_path)
    result = make_dgemm(examples, python, PKG_CONFIG="false")
    assert result.returncode != 0, result.stdout + result.stderr
    assert "no BLAS to build dgemm" in result.stderr
    for way in ("pip install scipy-openblas32", "libopenblas-dev", "BLAS_LIBS="):
        assert way in result.stderr
    assert not (examples / "dgemm" / "libdgemm.so").exists()


@pytest.mark.skipif(shutil.which("pkg-config") is None, reason="pkg-config is not installed")
def test_examples_makefile_finds_a_blas_through_pkg_config(tmp_path, monkeypatch):
    # A pkg-config file for the BLAS this venv has, standing in for a
    # system's openblas.pc; PKG_CONFIG_LIBDIR hides the system's own files.
    import scipy_openblas32 as openblas
    libdir = openblas.get_lib_dir()
    pc_dir = tmp_path / "pkgconfig"
    pc_dir.mkdir()
    (pc_dir / "openblas.pc").write_text(
        "Name: openblas\nDescription: stand-in\nVersion: 0\n"
        f"Cflags: -I{openblas.get_include_dir()} -DBLAS_SYMBOL_PREFIX=scipy_\n"
        f"Libs: -L{libdir} -l{openblas.get_library()} -Wl,-rpath,{libdir}\n")
    examples = copy_of_examples(tmp_path)
    python = python_without_scipy_openblas(tmp_path)
    monkeypatch.setenv("PKG_CONFIG_LIBDIR", str(pc_dir))
    monkeypatch.delenv("PKG_CONFIG_PATH", raising=False)
    result = make_dgemm(examples, python)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "dgemm: BLAS from pkg-config openblas" in result.stdout
    ran = run_example(examples, "dgemm", "128")
    assert ran.returncode == 0, ran.stdout + ran.stderr
    assert "bound-array result matches NumPy: True" in ran.stdout
