"""Environment variables (API.md section 8), each in a fresh interpreter."""

import os
import shutil
import textwrap

import pytest

from helpers import run_python

LOAD_AND_RUN = textwrap.dedent("""
    import numpy as np
    import pymic
    library = pymic.devices[0].load_library(NAME)
    out = np.zeros(1, dtype=np.int64)
    pymic.devices[0].get_default_stream().invoke(getattr(library, KERNEL), out)
    print("VALUE", out[0])
""")


def load_program(name, kernel="second_answer"):
    return f"NAME = {name!r}\nKERNEL = {kernel!r}\n" + LOAD_AND_RUN


def test_library_path_finds_a_bare_name(kernel_dir, tmp_path):
    result = run_python(load_program("libpymicsecond.so"), cwd=tmp_path,
                        env={"PYMIC_LIBRARY_PATH": str(kernel_dir)})
    assert result.returncode == 0, result.stderr
    assert "VALUE 42" in result.stdout


def test_library_path_with_several_directories_in_order(kernel_dir, tmp_path):
    first, second, empty = tmp_path / "first", tmp_path / "second", tmp_path / "empty"
    for directory in (first, second, empty):
        directory.mkdir()
    # The same file name in both: the first directory of the path wins.
    shutil.copy(kernel_dir / "libpymicsecond.so", first / "libpick.so")
    shutil.copy(kernel_dir / "libpymictest.so", second / "libpick.so")
    path = os.pathsep.join([str(empty), str(first), str(second)])
    result = run_python(load_program("libpick.so"), cwd=empty,
                        env={"PYMIC_LIBRARY_PATH": path})
    assert result.returncode == 0, result.stderr
    assert "VALUE 42" in result.stdout


def test_library_path_comes_before_the_working_directory(kernel_dir, tmp_path):
    in_path, working = tmp_path / "in_path", tmp_path / "working"
    in_path.mkdir()
    working.mkdir()
    shutil.copy(kernel_dir / "libpymicsecond.so", in_path / "libpick.so")
    shutil.copy(kernel_dir / "libpymictest.so", working / "libpick.so")
    result = run_python(load_program("libpick.so"), cwd=working,
                        env={"PYMIC_LIBRARY_PATH": str(in_path)})
    assert result.returncode == 0, result.stderr
    assert "VALUE 42" in result.stdout


def test_working_directory_is_searched_last(kernel_dir, tmp_path):
    shutil.copy(kernel_dir / "libpymicsecond.so", tmp_path / "libpick.so")
    result = run_python(load_program("libpick.so"), cwd=tmp_path,
                        env={"PYMIC_LIBRARY_PATH": str(tmp_path / "missing")})
    assert result.returncode == 0, result.stderr
    assert "VALUE 42" in result.stdout


def test_bare_name_found_nowhere_is_an_offload_error(tmp_path):
    result = run_python(load_program("libpymicsecond.so"), cwd=tmp_path,
                        env={"PYMIC_LIBRARY_PATH": None})
    assert result.returncode != 0
    assert "OffloadError" in result.stderr
    assert "libpymicsecond.so" in result.stderr


def test_debug_messages_go_to_stderr_with_prefix(kernel_dir, tmp_path):
    program = load_program(str(kernel_dir / "libpymicsecond.so"))
    result = run_python(program, env={"PYMIC_DEBUG": "1"})
    assert result.returncode == 0, result.stderr
    assert "VALUE 42" in result.stdout
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert lines, "PYMIC_DEBUG=1 printed nothing"
    assert any(line.startswith("PYMIC:") for line in lines), result.stderr
    assert "PYMIC:" not in result.stdout


def test_no_debug_messages_by_default(kernel_dir):
    program = load_program(str(kernel_dir / "libpymicsecond.so"))
    result = run_python(program, env={"PYMIC_DEBUG": None})
    assert result.returncode == 0, result.stderr
    assert "PYMIC:" not in result.stderr


TWO_DEVICES = textwrap.dedent("""
    import os
    import numpy as np
    import pymic

    print("DEVICES", pymic.number_of_devices(), len(pymic.devices))
    masks = []
    for number in pymic.devices:
        device = pymic.devices[number]
        library = device.load_library(LIBRARY)
        stream = device.create_stream()
        report = np.zeros(5, dtype=np.int64)
        stream.invoke(library.omp_report, report)
        masks.append(int(report[3]))
        # The kernel's OpenMP team runs on the device's cores only.
        assert report[4] & ~report[3] == 0, report
        assert 1 <= report[1] <= max(report[0], 1), report
        data = stream.bind(np.arange(4.0))
        doubled = (data + data).update_host().array
        stream.sync()
        assert (doubled == 2 * np.arange(4.0)).all(), doubled
        assert stream.get_device().device_id == number
    print("MASKS", *masks)
    all_cpus = 0
    for cpu in os.sched_getaffinity(0):
        all_cpus |= 1 << cpu
    print("ALL", all_cpus)
""")


def test_two_host_devices(kernel_dir):
    program = f"LIBRARY = {str(kernel_dir / 'libpymictest.so')!r}\n" + TWO_DEVICES
    result = run_python(program, env={"PYMIC_DEVICES": "host*2"})
    assert result.returncode == 0, result.stderr
    fields = {line.split()[0]: line.split()[1:] for line in result.stdout.splitlines()}
    assert fields["DEVICES"] == ["2", "2"]
    first, second = (int(mask) for mask in fields["MASKS"])
    all_cpus = int(fields["ALL"][0])
    assert first and second
    if bin(all_cpus).count("1") >= 2:
        # Two devices split the cores: disjoint, together all of them.
        assert first & second == 0
        assert first | second == all_cpus


def test_one_host_device_is_the_default(kernel_dir):
    result = run_python("import pymic; print(pymic.number_of_devices())",
                        env={"PYMIC_DEVICES": None})
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "1"


def test_explicit_host_layout(kernel_dir):
    result = run_python("import pymic; print(pymic.number_of_devices())",
                        env={"PYMIC_DEVICES": "host"})
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "1"


@pytest.mark.parametrize("layout", ["gpu", "host*0", "host*x"])
def test_bad_device_layout_is_reported(layout):
    program = textwrap.dedent("""
        try:
            import pymic
            pymic.number_of_devices()
            pymic.devices[0]
        except Exception as error:
            print("ERROR", type(error).__name__, error)
        else:
            print("NO ERROR")
    """)
    result = run_python(program, env={"PYMIC_DEVICES": layout})
    output = result.stdout + result.stderr
    assert "NO ERROR" not in output
    assert "PYMIC_DEVICES" in output


CROSS_DEVICE_EVENTS = textwrap.dedent("""
    import numpy as np
    import pymic

    first, second = pymic.devices[0], pymic.devices[1]
    lib_first = first.load_library(LIBRARY)
    lib_second = second.load_library(LIBRARY)
    producer = first.create_stream()
    consumer = second.create_stream()

    # An event of device 0 orders a stream of device 1; data crosses over
    # through the host.
    stage = np.zeros(4)
    offload = producer.bind(stage)
    producer.invoke(lib_first.sleep_then_fill, offload, 4, 8.0, 150)
    offload.update_host()
    ready = producer.record_event()
    consumer.wait_event(ready)
    late = consumer.bind(np.zeros(1))
    consumer.invoke(lib_second.sleep_then_fill, late, 1, 1.0, 0)
    after = consumer.record_event()
    after.sync()
    assert ready.done, "device 1 ran before the event of device 0"
    assert (stage == 8.0).all(), stage

    # Kernels on the two devices run at the same time.
    stamps = [producer.bind(np.zeros(2)), consumer.bind(np.zeros(2))]
    producer.invoke(lib_first.stamp_sleep, stamps[0], 200)
    consumer.invoke(lib_second.stamp_sleep, stamps[1], 200)
    hosts = [s.update_host().array for s in stamps]
    producer.sync()
    consumer.sync()
    (a0, a1), (b0, b1) = hosts
    assert max(a0, b0) < min(a1, b1), "devices did not overlap"
    print("ALL OK")
""")


def test_events_and_concurrency_across_two_devices(kernel_dir):
    program = f"LIBRARY = {str(kernel_dir / 'libpymictest.so')!r}\n" + CROSS_DEVICE_EVENTS
    result = run_python(program, env={"PYMIC_DEVICES": "host*2"})
    assert result.returncode == 0, result.stdout + result.stderr
    assert "ALL OK" in result.stdout


EXIT_WITH_PENDING_WORK = textwrap.dedent("""
    import numpy as np
    import pymic

    device = pymic.devices[0]
    library = device.load_library(LIBRARY)
    streams = [device.get_default_stream(), device.create_stream(), device.create_stream()]
    arrays = []
    for stream in streams:
        offload = stream.bind(np.zeros(1000))
        stream.invoke(library.sleep_then_fill, offload, 1000, 1.0, 200)
        offload.update_host()
        arrays.append(offload)
        pointer = stream.allocate_device_memory(64)
    print("ENQUEUED", flush=True)
    ENDING
""")


@pytest.mark.parametrize("ending, status", [("pass", 0),
                                            ("raise RuntimeError('user error')", 1),
                                            ("import sys; sys.exit(3)", 3)])
def test_interpreter_exits_cleanly_with_pending_work(kernel_dir, ending, status):
    # Programs often end without a final sync, or die of an exception.
    program = (f"LIBRARY = {str(kernel_dir / 'libpymictest.so')!r}\n"
               + EXIT_WITH_PENDING_WORK.replace("ENDING", ending))
    result = run_python(program)
    assert "ENQUEUED" in result.stdout, result.stderr
    assert result.returncode == status, result.stderr
    assert "Segmentation" not in result.stderr and "Fatal Python error" not in result.stderr


FORK_PROGRAM = textwrap.dedent("""
    import os
    import numpy as np
    import pymic

    device = pymic.devices[0]
    library = device.load_library(LIBRARY)
    stream = device.get_default_stream()
    inherited = stream.bind(np.ones(4))
    stream.sync()

    pid = os.fork()
    if pid == 0:
        # A stream of the parent either still works or says why it cannot;
        # it must never hang or crash.  A new stream works.
        try:
            result = (inherited + inherited).update_host().array
            stream.sync()
            assert (result == 2.0).all(), result
        except pymic.OffloadError as error:
            print("inherited stream refused:", error, flush=True)
        fresh = device.create_stream()
        data = np.ones(3)
        fresh.invoke(library.scale_double, data, 3, 5.0)
        os._exit(0 if (data == 5.0).all() else 1)
    _, status = os.waitpid(pid, 0)
    assert os.WIFEXITED(status) and os.WEXITSTATUS(status) == 0, status
    data = np.ones(2)
    stream.invoke(library.scale_double, data, 2, 3.0)
    assert (data == 3.0).all(), data
    print("ALL OK")
""")


@pytest.mark.host_device("a fork()ed child cannot use its parent's device process")
def test_fork_child_and_parent_keep_working(kernel_dir):
    # multiprocessing's default start method on Linux forks a process that
    # already imported pymic and ran work.
    program = f"LIBRARY = {str(kernel_dir / 'libpymictest.so')!r}\n" + FORK_PROGRAM
    result = run_python(program)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "ALL OK" in result.stdout
