"""OffloadLibrary and kernel handles (API.md sections 3 and 4)."""

import gc
import os
import shutil
import subprocess

import numpy as np
import pytest

import pymic


def test_kernel_handle_is_a_pymic_style_tuple(lib, device):
    kernel = lib.scale_double
    assert kernel[0] == "scale_double"
    assert isinstance(kernel[1], int) and kernel[1] != 0
    assert kernel[2] == device
    assert kernel[3] is lib


@pytest.mark.not_on_mpi("an MPI device's kernel handle is an opaque number of the device process, not the function's address")
def test_kernel_handle_address_is_the_functions_address(lib, stream):
    out = np.zeros(1, dtype=np.uint64)
    stream.invoke(lib.report_own_address, out)
    assert int(out[0]) == lib.report_own_address[1]


def test_kernel_handles_are_cached(lib):
    assert lib.scale_double is lib.scale_double


def test_different_kernels_have_different_addresses(lib):
    assert lib.scale_double[1] != lib.increment_int64[1]


def test_unknown_kernel_names_kernel_and_library(lib):
    with pytest.raises(pymic.OffloadError) as info:
        lib.no_such_kernel
    message = str(info.value)
    assert "no_such_kernel" in message
    assert "libpymictest" in message


def test_unknown_kernel_leaves_library_usable(lib, stream, usable):
    with pytest.raises(pymic.OffloadError):
        lib.no_such_kernel
    usable()


def test_kernel_from_another_library_is_not_found_here(lib, device, kernel_dir):
    second = device.load_library(str(kernel_dir / "libpymicsecond.so"))
    assert second.second_answer[0] == "second_answer"
    with pytest.raises(pymic.OffloadError):
        lib.second_answer
    with pytest.raises(pymic.OffloadError):
        second.scale_double


def test_static_helper_is_not_a_kernel(lib):
    # report_arguments in many_args.c is static: not exported.
    with pytest.raises(pymic.OffloadError):
        lib.report_arguments


def test_loading_the_same_library_twice_works(device, kernel_dir, stream):
    path = str(kernel_dir / "libpymicsecond.so")
    first = device.load_library(path)
    second = device.load_library(path)
    assert second is first
    for library in (first, second):
        out = np.zeros(1, dtype=np.int64)
        stream.invoke(library.second_answer, out)
        assert out[0] == 42


def test_bare_name_found_in_the_working_directory(device, kernel_dir, monkeypatch, stream):
    monkeypatch.delenv("PYMIC_LIBRARY_PATH", raising=False)
    monkeypatch.chdir(kernel_dir)
    library = device.load_library("libpymicsecond.so")
    out = np.zeros(1, dtype=np.int64)
    stream.invoke(library.second_answer, out)
    assert out[0] == 42


def test_bare_name_found_in_pymic_library_path(device, kernel_dir, monkeypatch, tmp_path, stream):
    # The variable is read when load_library runs, as with pyMIC.
    monkeypatch.setenv("PYMIC_LIBRARY_PATH",
                       os.pathsep.join([str(tmp_path / "nothing-here"), str(kernel_dir)]))
    monkeypatch.chdir(tmp_path)
    library = device.load_library("libpymicsecond.so")
    out = np.zeros(1, dtype=np.int64)
    stream.invoke(library.second_answer, out)
    assert out[0] == 42


def test_absolute_path_is_used_as_is(device, kernel_dir, monkeypatch, tmp_path):
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("PYMIC_LIBRARY_PATH", str(tmp_path))
    library = device.load_library(str(kernel_dir / "libpymicsecond.so"))
    assert library.second_answer[0] == "second_answer"


def test_builtin_array_library_is_found_by_bare_name(device):
    # libpymic_array.so lives in the package directory, which is searched.
    library = device.load_library("libpymic_array.so")
    assert library.pymic_array_add_float64[0] == "pymic_array_add_float64"


def test_not_a_library_names_the_file(device, kernel_dir, usable):
    with pytest.raises(pymic.OffloadError, match="libbogus"):
        device.load_library(str(kernel_dir / "libbogus.so"))
    usable()


def test_undefined_symbol_names_file_and_symbol(device, kernel_dir, usable):
    with pytest.raises(pymic.OffloadError) as info:
        device.load_library(str(kernel_dir / "libpymicundefined.so"))
    message = str(info.value)
    assert "libpymicundefined" in message
    assert "pymic_tests_variable_nobody_defines" in message
    usable()


def fresh_library(device, kernel_dir, tmp_path, name="libpymictest.so"):
    """Load a private copy of a test library, so that dropping it can really
    unload it (the session's copy stays loaded through the `lib` fixture)."""
    copy = tmp_path / f"private_{name}"
    shutil.copy(kernel_dir / name, copy)
    return device.load_library(str(copy))


def test_kernel_handle_keeps_its_library_alive(device, kernel_dir, tmp_path, stream):
    library = fresh_library(device, kernel_dir, tmp_path)
    kernel = library.scale_double
    del library
    gc.collect()
    data = np.ones(3)
    stream.invoke(kernel, data, 3, 7.0)
    np.testing.assert_array_equal(data, np.full(3, 7.0))
    assert kernel[3].scale_double is kernel


def test_library_dropped_while_its_kernel_is_queued(device, kernel_dir, tmp_path, stream, usable):
    library = fresh_library(device, kernel_dir, tmp_path)
    target = stream.bind(np.zeros(4))
    stream.invoke(library.sleep_then_fill, target, 4, 2.0, 100)
    del library
    gc.collect()
    result = target.update_host().array
    stream.sync()
    np.testing.assert_array_equal(result, np.full(4, 2.0))
    usable()


def build_version_library(path, value):
    """Build (with the linker, which writes a new file) a library whose
    kernel `version` stores `value`."""
    source = path.with_name(f"version{value}.c")
    source.write_text("#include <pymic_kernel.h>\n"
                      f"PYMIC_KERNEL void version(int64_t *out) {{ *out = {value}; }}\n")
    compiler = os.environ.get("CC", "cc")
    subprocess.run([compiler, "-shared", "-fPIC", f"-I{pymic.get_include()}", "-o", str(path),
                    str(source)], check=True, capture_output=True)


def run_version(stream, library):
    out = np.zeros(1, dtype=np.int64)
    stream.invoke(library.version, out)
    stream.sync()
    return int(out[0])


def test_a_library_rebuilt_at_the_same_path_runs_the_new_code(device, tmp_path, stream):
    path = tmp_path / "libv.so"
    build_version_library(path, 1)
    first = device.load_library(str(path))
    assert run_version(stream, first) == 1
    inode = os.stat(path).st_ino
    build_version_library(path, 2)  # edit, rebuild: a new file at the same path
    assert os.stat(path).st_ino != inode
    second = device.load_library(str(path))
    assert second is not first
    assert run_version(stream, second) == 2
    assert run_version(stream, first) == 1  # what was loaded stays as it was
    assert device.load_library(str(path)) is second


def build_origin_library(directory, helper, value, kernel_value=None):
    """Build in `directory` lib<helper>.so (helper_value returns `value`)
    and, if `kernel_value` is given, libk.so: kernel `through_helper`
    stores helper_value() + `kernel_value`, linked against the helper with
    the run path $ORIGIN (the loader finds the helper beside the library).
    Each test names its own helper: the loader reuses a loaded object whose
    name a library needs (DT_NEEDED) instead of searching again."""
    compiler = os.environ.get("CC", "cc")
    source = directory / "helper.c"
    source.write_text(f"int helper_value(void) {{ return {value}; }}\n")
    subprocess.run([compiler, "-shared", "-fPIC", "-o", str(directory / f"lib{helper}.so"),
                    str(source)], check=True, capture_output=True)
    if kernel_value is None:
        return
    kernel = directory / "kernel.c"
    kernel.write_text("#include <pymic_kernel.h>\n"
                      "int helper_value(void);\n"
                      "PYMIC_KERNEL void through_helper(int64_t *out)\n"
                      f"{{ *out = helper_value() + {kernel_value}; }}\n")
    subprocess.run([compiler, "-shared", "-fPIC", f"-I{pymic.get_include()}", "-o",
                    str(directory / "libk.so"), str(kernel), f"-L{directory}", f"-l{helper}",
                    "-Wl,-rpath,$ORIGIN"], check=True, capture_output=True)


def run_through_helper(stream, library):
    out = np.zeros(1, dtype=np.int64)
    stream.invoke(library.through_helper, out)
    stream.sync()
    return int(out[0])


def test_origin_in_the_run_path_names_the_library_directory(device, tmp_path, stream):
    # Not in the working directory nor on any search path: only $ORIGIN
    # finds the helper.
    build_origin_library(tmp_path, "origin_a", 7, kernel_value=100)
    library = device.load_library(str(tmp_path / "libk.so"))
    assert run_through_helper(stream, library) == 107
    # Rebuilt at the same path: the new code runs; the helper the old file
    # loaded is the one its name (DT_NEEDED) finds, as the loader does.
    build_origin_library(tmp_path, "origin_a", 7, kernel_value=200)
    rebuilt = device.load_library(str(tmp_path / "libk.so"))
    assert rebuilt is not library
    assert run_through_helper(stream, rebuilt) == 207
    assert run_through_helper(stream, library) == 107


def test_origin_through_a_relative_path_and_a_link(device, tmp_path, stream, monkeypatch):
    (tmp_path / "lib").mkdir()
    build_origin_library(tmp_path / "lib", "origin_b", 3, kernel_value=10)
    os.symlink(tmp_path / "lib", tmp_path / "link")
    monkeypatch.chdir(tmp_path)
    library = pymic.OffloadLibrary(os.path.join("link", "libk.so"), device=device)
    assert run_through_helper(stream, library) == 13


def test_a_library_missing_its_origin_dependency_says_which(device, tmp_path, usable):
    build_origin_library(tmp_path, "origin_c", 1, kernel_value=1)
    (tmp_path / "liborigin_c.so").unlink()
    with pytest.raises(pymic.OffloadError, match="liborigin_c.so"):
        device.load_library(str(tmp_path / "libk.so"))
    usable()


def test_a_directory_is_not_a_library(device, tmp_path, usable):
    with pytest.raises(pymic.OffloadError, match="directory"):
        device.load_library(str(tmp_path))
    usable()
