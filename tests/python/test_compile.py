"""device.load_source / pymic.compile: compiling, the cache (hits, misses,
other processes, concurrent compiles), compile errors, and the cache's
refusal to load what another user could have planted."""

import os
import stat
import subprocess
import sys
import textwrap
import threading

import numpy as np
import pytest

import pymic

SOURCE = textwrap.dedent(r"""
    #include <pymic_kernel.h>

    PYMIC_KERNEL void axpy(double *y, const double *x, const double *a, const int64_t *n)
    {
        #pragma omp parallel for
        for (int64_t i = 0; i < *n; i++)
            y[i] += *a * x[i];
    }
""")

BROKEN = textwrap.dedent("""\
    #include <pymic_kernel.h>

    PYMIC_KERNEL void broken(double *y)
    {
        y[0] = undeclared_name;
    }
""")


@pytest.fixture
def cache(tmp_path, monkeypatch):
    """A fresh, private compile cache for one test."""
    directory = tmp_path / "cache"
    monkeypatch.setenv("PYMIC_CACHE_DIR", str(directory))
    return directory


@pytest.fixture
def logging_compiler(tmp_path, monkeypatch):
    """PYMIC_CC: a wrapper of the real compiler that logs every call."""
    log = tmp_path / "compiler.log"
    wrapper = tmp_path / "logging-cc"
    real = os.environ.get("CC", "cc")
    wrapper.write_text(f'#!/bin/sh\necho "$*" >> "{log}"\nexec {real} "$@"\n')
    wrapper.chmod(0o755)
    monkeypatch.setenv("PYMIC_CC", str(wrapper))
    log.write_text("")
    return log


def compile_lines(log):
    return [line for line in log.read_text().splitlines() if "--version" not in line]


def run_axpy(device, library):
    y = np.ones(100)
    x = np.arange(100.0)
    device.get_default_stream().invoke(library.axpy, y, x, 2.0, 100)
    return np.array_equal(y, 1.0 + 2.0 * x)


def test_load_source_compiles_and_runs(device, cache):
    library = device.load_source(SOURCE)
    assert isinstance(library, pymic.OffloadLibrary)
    assert run_axpy(device, library)
    assert os.path.dirname(os.path.dirname(library.path)) == str(cache)


def test_cache_hit_in_this_process_and_in_another(device, cache, logging_compiler):
    first = pymic.compile(SOURCE)
    assert len(compile_lines(logging_compiler)) == 1
    assert "-O3 -fopenmp -fPIC -shared" in compile_lines(logging_compiler)[0]
    assert f"-I{pymic.get_include()}" in compile_lines(logging_compiler)[0]
    calls = logging_compiler.read_text()
    library = device.load_source(SOURCE)
    assert run_axpy(device, library)
    assert pymic.compile(SOURCE) == first
    assert logging_compiler.read_text() == calls  # no compile, no --version
    # Another process finds it too, without starting the compiler at all.
    script = ("import sys, pymic\nsource = sys.stdin.read()\n"
              "pymic.devices[0].load_source(source)\nprint(pymic.compile(source))\n")
    result = subprocess.run([sys.executable, "-c", script], input=SOURCE, capture_output=True,
                            text=True, timeout=120, cwd=cache.parent)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == first
    assert logging_compiler.read_text() == calls


@pytest.mark.parametrize("change", ["source", "flags", "libraries", "compiler"])
def test_what_changes_the_key(device, cache, logging_compiler, tmp_path, change):
    base = pymic.compile(SOURCE)
    arguments = {"source": SOURCE, "flags": (), "libraries": (), "compiler": None}
    if change == "source":
        arguments["source"] = SOURCE + "\n/* another version */\n"
    elif change == "flags":
        arguments["flags"] = ("-DSOMETHING=1",)
    elif change == "libraries":
        arguments["libraries"] = ("m",)
    else:
        other = tmp_path / "other-cc"
        other.write_text(f'#!/bin/sh\nexec {os.environ.get("CC", "cc")} "$@"\n')
        other.chmod(0o755)
        arguments["compiler"] = str(other)
    path = pymic.compile(**arguments)
    assert path != base
    assert run_axpy(device, device.load_library(path))
    assert len(compile_lines(logging_compiler)) == (1 if change == "compiler" else 2)


def test_flags_and_libraries_reach_the_compiler(cache, logging_compiler):
    libpymic = os.path.join(os.path.dirname(pymic.__file__), "libpymic.so")
    pymic.compile(SOURCE, flags=["-DWIDTH=4", "-Wall"], libraries=("m", libpymic))
    (line,) = compile_lines(logging_compiler)
    assert "-DWIDTH=4 -Wall -o out.so" in line
    # Libraries come after the source, as the linker needs them.
    assert line.endswith(f"pymic_source.c -lm {libpymic}")


def test_concurrent_compiles_in_processes_leave_one_good_entry(device, cache, tmp_path,
                                                               monkeypatch):
    # A compiler slow enough that the processes overlap.
    slow = tmp_path / "slow-cc"
    slow.write_text(f'#!/bin/sh\nsleep 0.3\nexec {os.environ.get("CC", "cc")} "$@"\n')
    slow.chmod(0o755)
    monkeypatch.setenv("PYMIC_CC", str(slow))
    source = SOURCE + "\n/* concurrent */\n"
    script = "import sys, pymic\nprint(pymic.compile(sys.stdin.read()))\n"
    processes = [subprocess.Popen([sys.executable, "-c", script], stdin=subprocess.PIPE,
                                  stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                                  cwd=tmp_path)
                 for _ in range(4)]
    outputs = [p.communicate(source, timeout=300) for p in processes]
    assert all(p.returncode == 0 for p in processes), [err for _, err in outputs]
    paths = {out.strip() for out, _ in outputs}
    assert len(paths) == 1
    entries = os.listdir(cache / "kernels")
    assert sorted(name.rsplit(".", 1)[1] for name in entries) == ["c", "json", "so"]
    assert run_axpy(device, device.load_source(source))


def test_concurrent_compiles_in_threads(device, cache):
    source = SOURCE + "\n/* threads */\n"
    results, errors = [], []

    def work():
        try:
            results.append(pymic.compile(source))
        except Exception as error:  # reported below
            errors.append(error)

    threads = [threading.Thread(target=work) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert not errors and len(set(results)) == 1
    assert not [name for name in os.listdir(cache / "kernels") if name.startswith(".")]
    assert run_axpy(device, device.load_library(results[0]))


def test_compile_error_carries_diagnostics_with_lines(device, cache):
    with pytest.raises(pymic.CompileError) as caught:
        device.load_source(BROKEN)
    error = caught.value
    assert isinstance(error, pymic.OffloadError)
    # Line 5 of the source string holds the error.
    assert "pymic_source.c:5:" in str(error)
    assert "undeclared_name" in error.diagnostics
    assert error.returncode != 0 and "pymic_source.c" in error.command
    # Nothing was cached, and pymic is still usable.
    assert [name for name in os.listdir(cache / "kernels") if name.endswith(".so")] == []
    assert run_axpy(device, device.load_source(SOURCE))


def test_missing_compiler(cache):
    with pytest.raises(pymic.CompileError, match="not found"):
        pymic.compile(SOURCE, compiler="/nonexistent/cc")


def test_bad_arguments(device, cache):
    with pytest.raises(TypeError):
        device.load_source(b"int x;")
    with pytest.raises(TypeError):
        pymic.compile(SOURCE, flags=[1, 2])
    with pytest.raises(TypeError):
        pymic.compile(SOURCE, libraries=3)
    with pytest.raises(ValueError):
        pymic.compile(SOURCE, compiler="")


def test_cache_dir_is_created_private(cache):
    pymic.compile(SOURCE)
    assert stat.S_IMODE(os.stat(cache).st_mode) == 0o700
    assert stat.S_IMODE(os.stat(cache / "kernels").st_mode) == 0o700


def test_default_cache_dir_follows_xdg(monkeypatch, tmp_path):
    monkeypatch.delenv("PYMIC_CACHE_DIR", raising=False)
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    assert pymic._compile.cache_dir() == str(tmp_path / "xdg" / "pymic")
    monkeypatch.delenv("XDG_CACHE_HOME")
    assert pymic._compile.cache_dir() == os.path.join(os.path.expanduser("~"), ".cache",
                                                      "pymic")


def test_refuses_a_cache_dir_others_can_write(cache):
    cache.mkdir(mode=0o700)
    cache.chmod(0o777)
    with pytest.raises(pymic.CacheSecurityError, match="writable by other users"):
        pymic.compile(SOURCE)


def test_refuses_an_entry_others_can_write(device, cache):
    path = pymic.compile(SOURCE)
    os.chmod(path, 0o766)
    with pytest.raises(pymic.CacheSecurityError, match="writable by other users"):
        device.load_source(SOURCE)


@pytest.mark.skipif(os.getuid() != 0, reason="needs root to give a file to another user")
def test_refuses_an_entry_owned_by_another_user(device, cache):
    path = pymic.compile(SOURCE)
    os.chown(path, 12345, 12345)
    with pytest.raises(pymic.CacheSecurityError, match="owned by uid 12345"):
        device.load_source(SOURCE)
    os.chown(cache, 12345, 12345)
    with pytest.raises(pymic.CacheSecurityError, match="owned by uid 12345"):
        pymic.compile(SOURCE)


def test_refuses_a_planted_symlink(device, cache, tmp_path):
    path = pymic.compile(SOURCE)
    os.replace(path, tmp_path / "elsewhere.so")
    os.symlink(tmp_path / "elsewhere.so", path)
    with pytest.raises(pymic.CacheSecurityError, match="symbolic link"):
        device.load_source(SOURCE)


def test_refuses_a_cache_under_a_directory_others_can_change(tmp_path, monkeypatch):
    shared = tmp_path / "shared"
    shared.mkdir()
    shared.chmod(0o777)  # no sticky bit: anyone may rename our cache away
    monkeypatch.setenv("PYMIC_CACHE_DIR", str(shared / "cache"))
    with pytest.raises(pymic.CacheSecurityError, match="other users"):
        pymic.compile(SOURCE)


def test_clear_cache(device, cache):
    library_path = pymic.compile(SOURCE)
    library = device.load_library(library_path)
    assert [entry["path"] for entry in pymic._compile.cache_entries()] == [library_path]
    assert pymic._compile.clear_cache() == 1
    assert pymic._compile.cache_entries() == []
    assert run_axpy(device, library)  # a loaded library outlives its file


def test_links_a_real_blas(device, cache):
    openblas = pytest.importorskip("scipy_openblas32")
    source = textwrap.dedent(r"""
        #include <pymic_kernel.h>
        #include <cblas.h>

        PYMIC_KERNEL void dot(const double *x, const double *y, double *out, const int64_t *n)
        {
            *out = scipy_cblas_ddot((int)*n, x, 1, y, 1);
        }
    """)
    libdir = openblas.get_lib_dir()
    library = device.load_source(
        source, flags=(f"-I{openblas.get_include_dir()}", f"-L{libdir}",
                       f"-Wl,-rpath,{libdir}"),
        libraries=(openblas.get_library(),))
    x, y, out = np.arange(10.0), np.ones(10), np.zeros(1)
    device.get_default_stream().invoke(library.dot, x, y, out, 10)
    assert out[0] == 45.0
