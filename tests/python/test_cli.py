"""python -m pymic: info, selftest, trace-summary, cache."""

import json
import os
import re
import subprocess
import sys
import textwrap

import pytest

import pymic

KERNEL = textwrap.dedent(r"""
    #include <pymic_kernel.h>
    #include <time.h>

    PYMIC_KERNEL void nap(const int64_t *us)
    {
        struct timespec t = {0, (long)*us * 1000L};
        nanosleep(&t, NULL);
    }
""")


def run_cli(tmp_path, *args, env=None):
    environment = dict(os.environ)
    environment.update(env or {})
    # From a directory without pymic's source tree, so the installed
    # package is the one imported.
    return subprocess.run([sys.executable, "-m", "pymic", *args], capture_output=True,
                          text=True, env=environment, cwd=tmp_path, timeout=300)


def test_info(tmp_path):
    env = {"PYMIC_DEVICES": "host*2", "PYMIC_SPIN_NS": "1234"}
    with pytest.MonkeyPatch.context() as patch:
        patch.delenv("PYMIC_CACHE_DIR", raising=False)
        result = run_cli(tmp_path, "info", env=env)
    assert result.returncode == 0, result.stderr
    out = result.stdout
    assert f"pymic {pymic.__version__}" in out
    assert "devices: 2" in out
    for device in (0, 1):
        assert re.search(rf"device {device}: kind host, name \S+, \d+ cores", out)
    assert "memory:" in out and "limit" in out
    assert "kernel arguments per invoke: %d" % pymic.MAX_KERNEL_ARGS in out
    assert "spin window: 1234 ns" in out
    assert re.search(r"PYMIC_DEVICES\s+'host\*2'", out)
    assert re.search(r"PYMIC_CACHE_DIR\s+\(unset\)", out)
    assert re.search(r"OpenMP runtime: \S*lib(g|i)?omp", out)
    assert "Python " in out and "NumPy " in out and "C compiler:" in out


def test_selftest_on_every_device(tmp_path):
    result = run_cli(tmp_path, "selftest", "--iterations", "200",
                     env={"PYMIC_DEVICES": "host*2"})
    assert result.returncode == 0, result.stdout + result.stderr
    lines = [line for line in result.stdout.splitlines() if line.startswith("device ")]
    assert len(lines) == 2
    for line in lines:
        assert ": ok;" in line
        assert re.search(r"median \d+\.\d+ us over 200", line)
    assert "selftest passed" in result.stdout


@pytest.fixture(scope="module")
def trace_file(tmp_path_factory):
    """A trace of two streams running a kernel compiled from a string."""
    directory = tmp_path_factory.mktemp("cli-trace")
    (directory / "kernel.c").write_text(KERNEL)
    script = textwrap.dedent("""
        import pymic
        device = pymic.devices[0]
        library = device.load_source(open("kernel.c").read())
        a, b = device.create_stream(), device.create_stream()
        for _ in range(5):
            a.invoke(library.nap, 200)
            b.invoke(library.nap, 100)
        a.sync()
        b.sync()
    """)
    path = directory / "trace.json"
    result = subprocess.run([sys.executable, "-c", script], cwd=directory, capture_output=True,
                            text=True, timeout=300,
                            env=dict(os.environ, PYMIC_TRACE=str(path),
                                     PYMIC_CACHE_DIR=str(directory / "cache")))
    assert result.returncode == 0, result.stderr
    return path


def test_trace_summary(tmp_path, trace_file):
    result = run_cli(tmp_path, "trace-summary", str(trace_file))
    assert result.returncode == 0, result.stderr
    out = result.stdout
    header = next(line for line in out.splitlines() if line.startswith("name"))
    assert header.split() == ["name", "count", "total", "ms", "mean", "us", "p95", "us",
                              "bytes"]
    (nap,) = [line for line in out.splitlines() if line.startswith("nap ")]
    assert nap.split()[1] == "10"
    # The figures are the trace's own: total = sum of the slices.
    events = json.loads(trace_file.read_text())["traceEvents"]
    durations = [e["dur"] for e in events if e.get("name") == "nap" and e["ph"] == "X"]
    assert float(nap.split()[2]) == pytest.approx(sum(durations) / 1000, abs=0.001)
    assert "Host waits" in out and "all host waits" in out
    assert "sync stream" in out or "sync device" in out
    assert out.count("/ stream") == 2  # idle gaps per stream
    assert "largest gap us" in out


def test_trace_summary_of_a_missing_file(tmp_path):
    result = run_cli(tmp_path, "trace-summary", str(tmp_path / "none.json"))
    assert result.returncode == 2
    assert "cannot read" in result.stderr


def test_cache_list_and_clear(tmp_path):
    env = {"PYMIC_CACHE_DIR": str(tmp_path / "cache")}
    empty = run_cli(tmp_path, "cache", env=env)
    assert empty.returncode == 0 and "0 kernel(s)" in empty.stdout
    script = "import pymic, sys; print(pymic.compile(sys.stdin.read()))"
    made = subprocess.run([sys.executable, "-c", script], input=KERNEL, capture_output=True,
                          text=True, cwd=tmp_path, env=dict(os.environ, **env), timeout=300)
    assert made.returncode == 0, made.stderr
    key = os.path.basename(made.stdout.strip())[:16]
    listed = run_cli(tmp_path, "cache", "list", env=env)
    assert listed.returncode == 0
    assert "1 kernel(s)" in listed.stdout and key in listed.stdout
    assert "void nap(const int64_t *us)" in listed.stdout.splitlines()[2]
    cleared = run_cli(tmp_path, "cache", "clear", env=env)
    assert cleared.returncode == 0 and "removed 1" in cleared.stdout
    assert "0 kernel(s)" in run_cli(tmp_path, "cache", env=env).stdout
    assert run_cli(tmp_path, "cache", "dir", env=env).stdout.strip() == env["PYMIC_CACHE_DIR"]


TWO_KERNELS = textwrap.dedent(r"""
    #include <pymic_kernel.h>

    struct pair { double x, y; };

    static double twice_of(double x) { return 2.0 * x; }

    /* Spread over lines, as kernels with many parameters are. */
    PYMIC_KERNEL
    void twice(double *restrict a,
               const int64_t *n)
    {
        for (int64_t i = 0; i < *n; i++) a[i] = twice_of(a[i]);
    }

    PYMIC_KERNEL void swap(struct pair *p, const int64_t *n)
    {
        for (int64_t i = 0; i < *n; i++) { double t = p[i].x; p[i].x = p[i].y; p[i].y = t; }
    }
""")


def test_cache_list_prints_each_kernels_parsed_signature(tmp_path):
    # What invoke checks, one line per PYMIC_KERNEL function (parsed, not
    # the source line), and why a kernel stays unchecked.
    env = {"PYMIC_CACHE_DIR": str(tmp_path / "cache")}
    script = "import pymic, sys; print(pymic.compile(sys.stdin.read()))"
    made = subprocess.run([sys.executable, "-c", script], input=TWO_KERNELS,
                          capture_output=True, text=True, cwd=tmp_path,
                          env=dict(os.environ, **env), timeout=300)
    assert made.returncode == 0, made.stderr
    listed = run_cli(tmp_path, "cache", "list", env=env)
    assert listed.returncode == 0, listed.stderr
    lines = [line.strip() for line in listed.stdout.splitlines()]
    assert "void twice(double *a, const int64_t *n)" in lines, listed.stdout
    unchecked = [line for line in lines if line.startswith("swap:")]
    assert len(unchecked) == 1 and "unchecked" in unchecked[0], listed.stdout
    assert "struct" in unchecked[0], listed.stdout
    assert not any("twice_of" in line for line in lines), listed.stdout


@pytest.mark.parametrize("command", [("info",), ("cache", "list"), ("--version",)])
def test_output_into_a_closed_pipe_ends_quietly(tmp_path, command):
    # `python -m pymic info | head -3`: the reader leaves early; the command
    # stops without a traceback, as Unix tools do.
    reader, writer = os.pipe()
    os.close(reader)  # gone before the command writes anything
    try:
        result = subprocess.run([sys.executable, "-m", "pymic", *command], stdout=writer,
                                stderr=subprocess.PIPE, text=True, cwd=tmp_path, timeout=300,
                                env=dict(os.environ, PYMIC_CACHE_DIR=str(tmp_path / "c")))
    finally:
        os.close(writer)
    assert result.stderr == "", result.stderr
    # argparse itself ignores a failed write of --version
    assert result.returncode == (0 if command == ("--version",) else 1)


def test_unknown_command(tmp_path):
    result = run_cli(tmp_path, "bogus")
    assert result.returncode == 2
    assert "invalid choice" in result.stderr


@pytest.mark.parametrize("content", [
    b"[1, 2, 3]",
    b'[{"ph": "X", "name": "k", "pid": 1, "tid": 1, "ts": 0}]',
    b'{"traceEvents": 5}',
    b'{"traceEvents": [{"ph": "X", "name": "k"}]}',
    b'{"traceEvents": [{"ph": "M", "name": "thread_name", "pid": 1, "tid": 2, "args": {}}]}',
    b'{"traceEvents": [{"ph": "X", "name": "k", "pid": 1, "tid": 1, "ts": 0, "dur": 1,'
    b' "cat": "invoke", "args": {"bytes": "many"}}]}',
    b'{"something": 1}',
    b'"a string"',
    b"not json at all",
    b"\xff\xfe\x00\x01binary",
    b"[" * 100000,
], ids=["list of numbers", "slice without dur", "events not a list", "slice without pid",
        "thread without name", "bytes not a number", "object without events", "string",
        "not json", "binary", "deeply nested"])
def test_trace_summary_of_a_malformed_file(tmp_path, content):
    path = tmp_path / "bad.json"
    path.write_bytes(content)
    result = run_cli(tmp_path, "trace-summary", str(path))
    assert result.returncode == 2, result.stdout
    assert "Traceback" not in result.stderr, result.stderr
    assert f"pymic trace-summary: {path} is not a trace file: " in result.stderr
    assert len(result.stderr.splitlines()) == 1


def test_trace_summary_of_the_bare_array_form(tmp_path, trace_file):
    events = json.loads(trace_file.read_text())["traceEvents"]
    path = tmp_path / "array.json"
    path.write_text(json.dumps(events))
    result = run_cli(tmp_path, "trace-summary", str(path))
    assert result.returncode == 0, result.stderr
    assert [line for line in result.stdout.splitlines() if line.startswith("nap ")]


RANK_SCRIPT = textwrap.dedent("""
    import os, pymic
    device = pymic.devices[0]
    library = device.load_source(open("kernel.c").read())
    stream = device.create_stream()
    ready = stream.record_event()
    for _ in range(3):
        stream.invoke(library.nap, 100)
    ready.sync()
    stream.sync()
    print(os.getpid())
""")


def test_trace_merge_of_two_ranks(tmp_path):
    (tmp_path / "kernel.c").write_text(KERNEL)
    pids = []
    for rank in (0, 1):  # as mpirun would start them: same path, PMI_RANK set
        environment = dict(os.environ, PYMIC_TRACE=str(tmp_path / "run.json"),
                           PMI_RANK=str(rank), PYMIC_CACHE_DIR=str(tmp_path / "cache"))
        result = subprocess.run([sys.executable, "-c", RANK_SCRIPT], cwd=tmp_path,
                                capture_output=True, text=True, timeout=300, env=environment)
        assert result.returncode == 0, result.stderr
        pids.append(int(result.stdout))
    files = [tmp_path / "run.rank0.json", tmp_path / "run.rank1.json"]
    documents = [json.loads(f.read_text()) for f in files]
    assert [d["otherData"]["pid"] for d in documents] == pids  # real pids
    host_names = [e["args"]["name"] for d in documents for e in d["traceEvents"]
                  if e["ph"] == "M" and e["name"] == "process_name" and e["pid"] in pids]
    assert host_names == [f"host (pid {pid})" for pid in pids]

    out = tmp_path / "merged.json"
    result = run_cli(tmp_path, "trace-merge", str(files[1]), str(files[0]), "-o", str(out))
    assert result.returncode == 0, result.stderr
    merged = json.loads(out.read_text())
    events = merged["traceEvents"]
    processes = {e["pid"]: e["args"]["name"] for e in events
                 if e["ph"] == "M" and e["name"] == "process_name"}
    # One process per rank, named by the rank the file records.
    assert processes == {pids[0]: f"rank 0 (pid {pids[0]})",
                         pids[1]: f"rank 1 (pid {pids[1]})"}
    assert {e["pid"] for e in events} == set(pids)
    naps = {pid: [e for e in events if e.get("name") == "nap" and e["ph"] == "X"
                  and e["pid"] == pid] for pid in pids}
    assert all(len(slices) == 3 for slices in naps.values())
    tracks = {(e["pid"], e["tid"]): e["args"]["name"] for e in events
              if e["ph"] == "M" and e["name"] == "thread_name"}
    for pid, slices in naps.items():
        assert tracks[(pid, slices[0]["tid"])].startswith("device 0 (")
        assert tracks[(pid, slices[0]["tid"])].endswith("/ stream 1")
    # Each rank's times moved by the difference of the starts.
    shift = (documents[1]["otherData"]["clock_origin_unix_us"]
             - documents[0]["otherData"]["clock_origin_unix_us"])
    original = sorted(e["ts"] for e in documents[1]["traceEvents"]
                      if e.get("name") == "nap" and e["ph"] == "X")
    assert sorted(e["ts"] for e in naps[pids[1]]) == pytest.approx(
        [ts + shift for ts in original], abs=0.002)
    # Flows stay pairs, their ids unique across ranks.
    flows = {}
    for e in events:
        if e["ph"] in ("s", "f"):
            flows.setdefault(e["id"], []).append(e["ph"])
    assert flows and all(sorted(phases) == ["f", "s"] for phases in flows.values())
    assert len([e for e in events if e["ph"] == "s" and e["name"] == "event"]) == 2
    # The summary reads the merged file.
    summary = run_cli(tmp_path, "trace-summary", str(out))
    assert summary.returncode == 0, summary.stderr
    assert f"rank 1 (pid {pids[1]}) / device 0" in summary.stdout


def test_trace_merge_errors(tmp_path):
    bad = tmp_path / "bad.json"
    bad.write_text("[1]")
    result = run_cli(tmp_path, "trace-merge", str(bad), "-o", str(tmp_path / "out.json"))
    assert result.returncode == 2 and "Traceback" not in result.stderr
    assert str(bad) in result.stderr and "not a trace file" in result.stderr
    result = run_cli(tmp_path, "trace-merge", str(tmp_path / "none.json"), "-o",
                     str(tmp_path / "out.json"))
    assert result.returncode == 2 and "Traceback" not in result.stderr
    assert "No such file" in result.stderr
    assert not (tmp_path / "out.json").exists()
