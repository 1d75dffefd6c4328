"""The distribution is `pymic-offload` (`pymic` on PyPI is an unrelated
project); what it installs is imported as `pymic`.  The sdist and the wheel
carry the LICENSE, the metadata names licence and authors, the package is
typed (py.typed, and _engine.pyi names everything the compiled module
has), and ``python -m pymic --version`` tells the version."""

import ast
import importlib.metadata
import os
import shutil
import subprocess
import sys
import tarfile
import types
import zipfile
from pathlib import Path

import pytest

import pymic

REPOSITORY = Path(__file__).resolve().parents[2]


def test_import_name_pymic_comes_from_distribution_pymic_offload():
    distribution = importlib.metadata.distribution("pymic-offload")
    assert distribution.metadata["Name"] == "pymic-offload"
    assert distribution.version == pymic.__version__
    installed = {str(path) for path in distribution.files}
    assert "pymic/__init__.py" in installed


def test_pyproject_names_the_distribution():
    if sys.version_info >= (3, 11):
        import tomllib
    else:  # the file is simple enough for a line scan
        tomllib = None
    text = (REPOSITORY / "pyproject.toml").read_text()
    if tomllib:
        assert tomllib.loads(text)["project"]["name"] == "pymic-offload"
    else:
        assert 'name = "pymic-offload"' in text


# ------------------------------------------------ licence, metadata, typing

def test_repository_has_the_bsd_3_clause_license():
    text = (REPOSITORY / "LICENSE").read_text(encoding="utf-8")
    assert text.startswith("BSD 3-Clause License")
    assert "Copyright (c)" in text and "the pymic developers" in text
    assert "Neither the name of the copyright holder" in text  # the third clause


def test_installed_metadata_names_license_and_authors():
    metadata = importlib.metadata.metadata("pymic-offload")
    assert metadata["License-Expression"] == "BSD-3-Clause"
    assert metadata.get_all("License-File") == ["LICENSE"]
    assert metadata["Author"] == "the pymic developers"
    assert "Typing :: Typed" in metadata.get_all("Classifier")


def test_installed_package_carries_license_and_py_typed():
    # pip installed pymic from a wheel: the distribution's file list is the
    # wheel's.
    distribution = importlib.metadata.distribution("pymic-offload")
    installed = {path.as_posix() for path in distribution.files}
    assert "pymic/py.typed" in installed
    assert "pymic/_engine.pyi" in installed  # the compiled extension's types
    license_path = next(path for path in distribution.files
                        if path.as_posix().endswith(".dist-info/licenses/LICENSE"))
    assert "the pymic developers" in license_path.read_text()
    assert (Path(pymic.__file__).parent / "py.typed").is_file()


def test_python_m_pymic_version_prints_the_installed_version(tmp_path):
    # Run outside the source tree, whose pymic/ would shadow the installed one.
    result = subprocess.run([sys.executable, "-m", "pymic", "--version"], cwd=tmp_path,
                            capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == f"pymic {pymic.__version__}"
    assert importlib.metadata.version("pymic-offload") == pymic.__version__


# ----------------------------------------------------- sdist and wheel

def build_environment():
    """The environment for running the build backend: the venv's tools on
    PATH, and none of the sanitizer runs' preloads or the sanitized pymic
    (building a wheel is not what those runs test)."""
    env = {name: value for name, value in os.environ.items()
           if name not in ("LD_PRELOAD", "PYTHONPATH", "ASAN_OPTIONS", "UBSAN_OPTIONS",
                           "TSAN_OPTIONS")}
    env["PATH"] = os.pathsep.join([str(Path(sys.executable).parent), env.get("PATH", "")])
    return env


def run_backend(hook, output, *arguments):
    """Call a PEP 517 hook of meson-python in the repository, as pip would."""
    code = (f"import sys, mesonpy; "
            f"print(mesonpy.{hook}(sys.argv[1], *[eval(a) for a in sys.argv[2:]]))")
    result = subprocess.run([sys.executable, "-c", code, str(output), *map(repr, arguments)],
                            cwd=REPOSITORY, env=build_environment(), capture_output=True,
                            text=True, timeout=1200)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    return output / result.stdout.strip().splitlines()[-1]


needs_git_checkout = pytest.mark.skipif(
    not (REPOSITORY / ".git").exists() or shutil.which("git") is None,
    reason="an sdist is made from the git checkout (meson dist), and this is none")


@needs_git_checkout
def test_sdist_contains_license_and_py_typed(tmp_path):
    sdist = run_backend("build_sdist", tmp_path)
    with tarfile.open(sdist) as archive:
        names = {name.split("/", 1)[1] for name in archive.getnames() if "/" in name}
        metadata = archive.extractfile(f"{sdist.name[:-len('.tar.gz')]}/PKG-INFO").read()
    assert {"LICENSE", "pymic/py.typed", "pyproject.toml"} <= names
    assert b"License-File: LICENSE" in metadata
    assert b"License-Expression: BSD-3-Clause" in metadata


def test_wheel_contains_license_and_py_typed(tmp_path):
    # A build directory kept under build/ makes every run after the first an
    # incremental build.
    build_dir = REPOSITORY / "build" / "packaging-test"
    wheel = run_backend("build_wheel", tmp_path, {"build-dir": str(build_dir)})
    with zipfile.ZipFile(wheel) as archive:
        names = set(archive.namelist())
        dist_info = next(name.split("/")[0] for name in names if name.endswith("/METADATA"))
        metadata = archive.read(f"{dist_info}/METADATA").decode()
        license_text = archive.read(f"{dist_info}/licenses/LICENSE").decode()
    assert {"pymic/py.typed", "pymic/_engine.pyi"} <= names
    assert license_text == (REPOSITORY / "LICENSE").read_text(encoding="utf-8")
    assert "License-File: LICENSE" in metadata
    assert "Author: the pymic developers" in metadata


# ------------------------------------------------------------ type hints

USER_PROGRAM = '''
import numpy as np
import pymic

device: pymic.OffloadDevice = pymic.devices[0]
library: pymic.OffloadLibrary = device.load_library("libdouble_it.so")
both: list[pymic.OffloadLibrary] = device.load_library("liba.so", "libb.so")
stream: pymic.OffloadStream = device.get_default_stream()
a = np.arange(32.0)
offl_a: pymic.OffloadArray = stream.bind(a)
stream.invoke(library.doubleit_kernel, offl_a, a.size)
total: pymic.OffloadArray = offl_a + stream.zeros((32,)) * 2.0
event: pymic.OffloadEvent = stream.record_event()
seconds: float = event.elapsed(stream.record_event())
pointer: pymic.DevicePointer = stream.allocate_device_memory(64)
stream.transfer_host2device(a, pointer, 64)
offl_a.update_host()
stream.sync()
with pymic.trace("trace.json") as recording:
    events: list[dict[str, object]] = recording.events
path: str = pymic.compile("void k(void) {}", flags=("-O2",))
version: str = pymic.__version__
mine: pymic.OffloadDevice = pymic.local_device()
shared: bool = device.host_addressable
declared: list[str] = library.declare("void doubleit_kernel(double *a, const int64_t *n);")
values: np.ndarray = offl_a.get(stream)
offl_a.set(values)
copied: pymic.OffloadArray = pymic.from_dlpack(a, stream=stream)
viewed = np.from_dlpack(offl_a)
extents: tuple[int, ...] = offl_a.shape
same_stream: pymic.OffloadStream = offl_a.stream
'''

# Each line is one mistake mypy must report.
USER_MISTAKES = '''
import pymic

stream = pymic.devices[0].get_default_stream()
stream.bind([1.0, 2.0])
pymic.devices[0].load_library(3)
stream.zeros((4,), order="K")
count: str = pymic.number_of_devices()
stream.zeros((4,)).shape = (2, 2)
pymic.from_dlpack([1.0, 2.0])
'''


def run_mypy(directory, source):
    (directory / "program.py").write_text(source)
    # Outside the source tree, so that the installed, typed package is what
    # mypy reads (py.typed, _engine.pyi).
    return subprocess.run([sys.executable, "-m", "mypy", "--strict", "--no-incremental",
                           "--cache-dir", str(directory / ".mypy_cache"), "program.py"],
                          cwd=directory, env=build_environment(), capture_output=True,
                          text=True, timeout=600)


def test_user_code_type_checks_against_the_installed_package(tmp_path):
    pytest.importorskip("mypy", reason="mypy is a development requirement (make venv)")
    result = run_mypy(tmp_path, USER_PROGRAM)
    assert result.returncode == 0, result.stdout + result.stderr


def test_mistakes_in_user_code_are_reported(tmp_path):
    pytest.importorskip("mypy", reason="mypy is a development requirement (make venv)")
    result = run_mypy(tmp_path, USER_MISTAKES)
    assert result.returncode == 1, result.stdout + result.stderr
    reported = {int(line.split(":")[1]) for line in result.stdout.splitlines()
                if line.startswith("program.py:") and ": error:" in line}
    assert reported == {5, 6, 7, 8, 9, 10}, result.stdout


def stub_names(body):
    """Names a stub's module or class body defines."""
    names = set()
    for node in body:
        if isinstance(node, (ast.ClassDef, ast.FunctionDef)):
            names.add(node.name)
        elif isinstance(node, ast.AnnAssign) and isinstance(node.target, ast.Name):
            names.add(node.target.id)
        elif isinstance(node, ast.Assign):
            names.update(target.id for target in node.targets if isinstance(target, ast.Name))
    return names


def test_engine_stub_names_every_function_type_and_attribute_of_the_extension():
    """_engine.pyi must keep up with the C tables: a function, type, method,
    getter or member added in src/python/ and missing from the stub would
    be an unknown attribute to every type checker."""
    from pymic import _engine
    stub = ast.parse((Path(pymic.__file__).parent / "_engine.pyi").read_text(encoding="utf-8"))
    missing = sorted(name for name in vars(_engine)
                     if not name.startswith("__") and name not in stub_names(stub.body))
    stub_classes = {node.name: node for node in stub.body if isinstance(node, ast.ClassDef)}
    descriptors = (types.MethodDescriptorType, types.GetSetDescriptorType,
                   types.MemberDescriptorType)
    for class_name, node in stub_classes.items():
        runtime = getattr(_engine, class_name, None)
        if not isinstance(runtime, type):
            continue
        defined = stub_names(node.body)
        missing += sorted(f"{class_name}.{name}" for name, value in vars(runtime).items()
                          if isinstance(value, descriptors) and name not in defined
                          and not (name.startswith("__") and name.endswith("__")))
    assert not missing, f"not in pymic/_engine.pyi: {missing}"
