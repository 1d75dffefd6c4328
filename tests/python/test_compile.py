"""device.load_source / pymic.compile: compiling, the cache (hits, misses,
other processes, concurrent compiles), compile errors, and the cache's
refusal to load what another user could have planted."""

import os
import pwd
import shutil
import stat
import subprocess
import sys
import tempfile
import textwrap
import threading
import warnings

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


# ------------------------------------------------- files the compiler read

HEADER_SOURCE = textwrap.dedent(r"""
    #include <pymic_kernel.h>
    #include "consts.h"

    PYMIC_KERNEL void constant(int64_t *out)
    {
        *out = PYMIC_TEST_CONSTANT;
    }
""")


def run_constant(device, library):
    out = np.zeros(1, dtype=np.int64)
    device.get_default_stream().invoke(library.constant, out)
    return int(out[0])


def constant_in_new_process(cache, flags):
    script = ("import json, sys, numpy, pymic\n"
              "source, flags = json.load(sys.stdin)\n"
              "d = pymic.devices[0]\n"
              "library = d.load_source(source, flags=flags)\n"
              "out = numpy.zeros(1, dtype=numpy.int64)\n"
              "d.get_default_stream().invoke(library.constant, out)\n"
              "print(int(out[0]))\n")
    import json
    result = subprocess.run([sys.executable, "-c", script],
                            input=json.dumps([HEADER_SOURCE, list(flags)]),
                            capture_output=True, text=True, timeout=120, cwd=cache.parent)
    assert result.returncode == 0, result.stderr
    return int(result.stdout)


def test_a_changed_header_is_compiled_again(device, cache, logging_compiler, tmp_path):
    include = tmp_path / "include"
    include.mkdir()
    header = include / "consts.h"
    header.write_text("#define PYMIC_TEST_CONSTANT 1\n")
    flags = (f"-I{include}",)
    assert run_constant(device, device.load_source(HEADER_SOURCE, flags=flags)) == 1
    assert constant_in_new_process(cache, flags) == 1
    assert len(compile_lines(logging_compiler)) == 1  # the other process hit the cache
    header.write_text("#define PYMIC_TEST_CONSTANT 2\n")
    # A new process, and this one, see the new value: the key covers the header.
    assert constant_in_new_process(cache, flags) == 2
    assert run_constant(device, device.load_source(HEADER_SOURCE, flags=flags)) == 2
    assert len(compile_lines(logging_compiler)) == 2
    # Back to the first content: that entry is still there, no compile.
    header.write_text("#define PYMIC_TEST_CONSTANT 1\n")
    assert run_constant(device, device.load_source(HEADER_SOURCE, flags=flags)) == 1
    assert len(compile_lines(logging_compiler)) == 2


# --------------------------------------------------------------- warnings

WARNING_SOURCE = textwrap.dedent(r"""
    #include <pymic_kernel.h>

    PYMIC_KERNEL void warned(int64_t *out)
    {
        int unused_variable_here = 3;
        *out = 5;
    }
""")


def test_compiler_warnings_are_compiler_warnings(device, cache):
    assert issubclass(pymic.CompilerWarning, UserWarning)
    with pytest.warns(pymic.CompilerWarning, match="unused_variable_here") as caught:
        library = device.load_source(WARNING_SOURCE, flags=("-Wall",))
    # Raised on the caller's line, not inside pymic.
    assert caught[0].filename == __file__
    assert "unused_variable_here" in library.build_log
    out = np.zeros(1, dtype=np.int64)
    device.get_default_stream().invoke(library.warned, out)
    assert out[0] == 5
    # A cache hit runs no compiler and warns no more; the log stays readable.
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        again = device.load_source(WARNING_SOURCE, flags=("-Wall",))
    assert "unused_variable_here" in again.build_log
    # pymic.compile warns too; `-W error` makes the warning an exception.
    with warnings.catch_warnings():
        warnings.simplefilter("error", pymic.CompilerWarning)
        with pytest.raises(pymic.CompilerWarning):
            pymic.compile(WARNING_SOURCE + "\n/* again */\n", flags=("-Wall",))
    clean = device.load_source(SOURCE)
    assert clean.build_log == ""


def test_warnings_under_python_W_error(cache):
    script = ("import pymic, sys\npymic.devices[0].load_source(sys.stdin.read(), "
              "flags=('-Wall',))\n")
    result = subprocess.run([sys.executable, "-W", "error", "-c",
                             script], input=WARNING_SOURCE, capture_output=True, text=True,
                            timeout=120, cwd=cache.parent)
    assert result.returncode != 0
    assert "CompilerWarning" in result.stderr and "unused_variable_here" in result.stderr


# ------------------------------------------------- clear errors (issue 15, 18)

def test_cache_dir_that_is_a_file_is_a_clear_error(device, cache, tmp_path, monkeypatch):
    cache.write_text("not a directory\n")
    with pytest.raises(pymic.OffloadError, match="is not a directory"):
        device.load_source(SOURCE)
    monkeypatch.setenv("PYMIC_CACHE_DIR", str(cache / "below"))
    with pytest.raises(pymic.OffloadError, match="is not a directory"):
        pymic.compile(SOURCE)
    monkeypatch.setenv("PYMIC_CACHE_DIR", str(tmp_path / "good"))
    assert run_axpy(device, device.load_source(SOURCE))


def test_non_ascii_source_under_the_c_locale(cache):
    source = SOURCE.replace("{", "{ /* caf\u00e9 \u2211 */", 1)
    script = ("import sys, pymic\nsource = sys.stdin.buffer.read().decode('utf-8')\n"
              "library = pymic.devices[0].load_source(source)\nprint(library.axpy[0])\n")
    env = dict(os.environ, LC_ALL="C", LANG="C", PYTHONUTF8="0", PYTHONCOERCECLOCALE="0")
    result = subprocess.run([sys.executable, "-c", script], input=source.encode("utf-8"),
                            capture_output=True, env=env, timeout=120, cwd=cache.parent)
    assert result.returncode == 0, result.stderr.decode(errors="replace")
    assert result.stdout.strip() == b"axpy"


def test_source_utf8_cannot_encode(cache):
    with pytest.raises(ValueError, match="UTF-8"):
        pymic.compile(SOURCE + "/* \udc80 */\n")


# ------------------------------------------- another user (issue 15 item 1)

EVIL_SOURCE = textwrap.dedent(r"""
    #include <pymic_kernel.h>
    #include <stdio.h>

    /* Loading is enough to run code: it leaves a mark (EVIL_MARK). */
    __attribute__((constructor)) static void mark(void)
    {
        FILE *file = fopen(EVIL_MARK, "w");
        if (file)
            fclose(file);
    }

    PYMIC_KERNEL void axpy(double *y, const double *x, const double *a, const int64_t *n)
    {
        for (int64_t i = 0; i < *n; i++)
            y[i] = 666.0; /* the attacker's code ran */
    }
""")


@pytest.fixture(scope="module")
def other_user():
    """A second user (uid, gid) for the attacker's steps: created with
    useradd when the tests run as root, removed afterwards."""
    if os.getuid() != 0:
        pytest.skip("needs root: the attacker is a second user, created with useradd")
    if shutil.which("useradd") is None or shutil.which("userdel") is None:
        pytest.skip("needs useradd/userdel to create the attacker's user")
    name = f"pymic-att{os.getpid() % 100000}"
    subprocess.run(["useradd", "--no-create-home", "--shell", "/bin/sh", name], check=True,
                   capture_output=True)
    try:
        entry = pwd.getpwnam(name)
        yield entry.pw_uid, entry.pw_gid
    finally:
        subprocess.run(["userdel", name], capture_output=True)


def as_user(user, script):
    """Run the shell `script` as `user` (uid, gid): the attacker's steps."""
    uid, gid = user
    result = subprocess.run(["/bin/sh", "-ec", script], user=uid, group=gid, extra_groups=[],
                            capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr


@pytest.fixture
def scene():
    """A directory in /tmp that other users can reach (mode 0755, root's),
    removed afterwards, whoever owns what is in it."""
    directory = tempfile.mkdtemp(prefix="pymic-scene-", dir="/tmp")
    os.chmod(directory, 0o755)
    yield directory
    shutil.rmtree(directory, ignore_errors=True)


def give(user, path):
    """A directory of `user`'s own (as an administrator creates a home)."""
    os.mkdir(path, 0o700)
    os.chown(path, *user)


def evil_mark(scene):
    """The file the evil library creates when it is loaded."""
    return os.path.join(scene, "evil-was-loaded")


@pytest.fixture
def evil_library(scene):
    """A shared object whose `axpy` writes 666 and that leaves
    evil_mark(scene) when it is loaded, readable by everyone."""
    source = os.path.join(scene, "evil.c")
    with open(source, "w") as stream:
        stream.write(EVIL_SOURCE)
    library = os.path.join(scene, "evil.so")
    subprocess.run([os.environ.get("CC", "cc"), "-shared", "-fPIC",
                    f"-I{pymic.get_include()}", f'-DEVIL_MARK="{evil_mark(scene)}"', "-o",
                    library, source], check=True)
    os.chmod(library, 0o755)
    return library


def swap_just_before_the_load(monkeypatch, swap):
    """Run `swap(path)` after pymic's checks, just before the engine loads
    the library (the moment an attacker racing the checks aims at)."""
    real = pymic._engine.Library
    swapped = []

    def library(device_id, path, *rest):
        swap(path)
        swapped.append(path)
        return real(device_id, path, *rest)

    monkeypatch.setattr(pymic._engine, "Library", library)
    return swapped


def test_the_checked_file_is_the_loaded_file(device, cache, scene, evil_library, monkeypatch):
    # Whatever is at the entry's path after the check -- here a swapped
    # kernels/ directory with another file under the entry's name -- the
    # device loads the file that was opened and checked, and never even
    # loads the file at that name (its constructors would run).
    pymic.compile(SOURCE)

    def swap(path):
        kernels = os.path.dirname(path)
        planted = kernels + ".planted"
        os.mkdir(planted, 0o700)
        shutil.copy(evil_library, os.path.join(planted, os.path.basename(path)))
        os.rename(kernels, kernels + ".checked")
        os.rename(planted, kernels)

    swapped = swap_just_before_the_load(monkeypatch, swap)
    library = device.load_source(SOURCE)
    assert swapped == [library.path]
    assert run_axpy(device, library)  # not 666
    assert not os.path.exists(evil_mark(scene))


def test_a_directory_swapped_by_its_owner_is_refused(device, other_user, scene, evil_library,
                                                   monkeypatch):
    # PYMIC_CACHE_DIR=link/pymic, link -> dir/alice, dir the attacker's
    # (mode 0755): they can exchange alice for a directory of their own
    # between check and load.  The cache's real path has a directory
    # another user owns: refused before anything is loaded.
    attacker_dir = os.path.join(scene, "dir")
    give(other_user, attacker_dir)
    as_user(other_user, f"chmod 0755 {attacker_dir}")
    alice = os.path.join(attacker_dir, "alice")
    os.mkdir(alice, 0o700)
    link = os.path.join(scene, "link")
    os.symlink(alice, link)
    monkeypatch.setenv("PYMIC_CACHE_DIR", os.path.join(link, "pymic"))

    def swap(path):
        relative = os.path.relpath(path, os.path.join(link, "pymic"))
        planted = os.path.join(attacker_dir, "evil", "pymic", relative)
        as_user(other_user, f"mkdir -p {os.path.dirname(planted)}; cp {evil_library} {planted}; "
                            f"mv {alice} {attacker_dir}/old; mv {attacker_dir}/evil {alice}")

    swapped = swap_just_before_the_load(monkeypatch, swap)
    refused = None
    try:
        library = device.load_source(SOURCE)
    except pymic.CacheSecurityError as error:
        refused = error
    else:
        assert run_axpy(device, library), "the attacker's code ran"
    assert swapped == []
    assert refused is not None and f"owned by uid {other_user[0]}" in str(refused)


def test_a_symlink_another_user_owns_in_a_sticky_directory_is_refused(device, other_user,
                                                                    scene, monkeypatch):
    # /tmp-like: anyone may create entries, only their owner may replace
    # them.  The attacker's link points at our directory today, at theirs
    # tomorrow.
    sticky = os.path.join(scene, "sticky")
    os.mkdir(sticky)
    os.chmod(sticky, 0o1777)
    ours = os.path.join(scene, "ours")
    os.mkdir(ours, 0o700)
    link = os.path.join(sticky, "link")
    as_user(other_user, f"ln -s {ours} {link}")
    monkeypatch.setenv("PYMIC_CACHE_DIR", os.path.join(link, "pymic"))
    with pytest.raises(pymic.CacheSecurityError,
                       match=f"symbolic link owned by uid {other_user[0]}"):
        device.load_source(SOURCE)
    # Our own link there is fine: nobody else may replace it.
    os.symlink(ours, os.path.join(sticky, "mine"))
    monkeypatch.setenv("PYMIC_CACHE_DIR", os.path.join(sticky, "mine", "pymic"))
    assert run_axpy(device, device.load_source(SOURCE))


def test_a_read_only_directory_another_user_owns_is_refused(device, other_user, scene,
                                                          monkeypatch):
    # Mode 0555 today; its owner can chmod it back and replace our cache.
    theirs = os.path.join(scene, "theirs")
    give(other_user, theirs)
    as_user(other_user, f"chmod 0755 {theirs}")
    os.mkdir(os.path.join(theirs, "ours"), 0o700)
    as_user(other_user, f"chmod 0555 {theirs}")
    monkeypatch.setenv("PYMIC_CACHE_DIR", os.path.join(theirs, "ours", "pymic"))
    with pytest.raises(pymic.CacheSecurityError, match=f"owned by uid {other_user[0]}"):
        device.load_source(SOURCE)


def test_an_entry_planted_by_another_user_is_refused_on_the_open_file(device, other_user,
                                                                     cache, evil_library):
    # An entry that is not ours (here: placed as root, owned by the
    # attacker) is refused from its descriptor's fstat.
    path = pymic.compile(SOURCE)
    os.unlink(path)
    shutil.copy(evil_library, path)
    os.chown(path, *other_user)
    with pytest.raises(pymic.CacheSecurityError, match=f"owned by uid {other_user[0]}"):
        device.load_source(SOURCE)
