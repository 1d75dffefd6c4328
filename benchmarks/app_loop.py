"""The application time step of B9 and B10, for pymic and its ctypes peer.

A step is 30 kernel calls from ``libbench_app.so`` (element-wise OpenMP
kernels on n doubles and a 24x16 operator applied to 16 rows of n/16
points through OpenBLAS), each followed by about 10 µs of Python work.
pymic invokes them on the default stream with device-resident arrays,
either syncing after every kernel (what the application that filed
issue 9 does) or once at the end of the step; the peer calls the same
functions in the same .so through ctypes from the Python thread, so both
use the same OpenMP runtime and thread count.
"""

import ctypes
import json
import os
import pathlib
import subprocess
import sys
import tempfile
import time

import numpy as np

import targets
from timing import interleave, perf_ns, summarize

STEP_KERNELS = 30
# One cycle of kernels; a step repeats it (30 = 5 cycles of 6).
CYCLE = ("axpy", "smooth", "relax", "operator", "axpy", "relax")
OPERATOR_ROWS, OPERATOR_INNER = 24, 16


def busy_loop_count(target_seconds=10e-6, trials=200):
    """Calibrate a pure-Python loop to about `target_seconds` per call.

    Parameters
    ----------
    target_seconds : float, optional
        Wanted duration of :func:`python_work`.
    trials : int, optional
        Calls timed for the calibration (median taken).

    Returns
    -------
    int
        Iteration count to pass to :func:`python_work`.
    """
    count = 200
    for _ in range(4):
        samples = []
        for _ in range(trials):
            start = perf_ns()
            python_work(count)
            samples.append(perf_ns() - start)
        samples.sort()
        median = samples[len(samples) // 2] * 1e-9
        count = max(1, int(count * target_seconds / max(median, 1e-9)))
    return count


def python_work(count):
    """The Python between two kernels: a loop the interpreter runs.

    Parameters
    ----------
    count : int
        Iterations (see :func:`busy_loop_count`).

    Returns
    -------
    int
        A value depending on every iteration (so nothing is skipped).
    """
    total = 0
    for i in range(count):
        total += i & 7
    return total


def _arrays(n, seed=9):
    generator = np.random.default_rng(seed)
    m = n // OPERATOR_INNER
    return {
        "y": generator.uniform(0.5, 1.5, n), "x": generator.uniform(0.5, 1.5, n),
        "u": generator.uniform(0.5, 1.5, n), "v": generator.uniform(0.5, 1.5, n),
        "w": generator.uniform(0.5, 1.5, n), "s": np.zeros(n),
        "a": generator.uniform(-0.1, 0.1, OPERATOR_ROWS * OPERATOR_INNER),
        "b": generator.uniform(0.5, 1.5, OPERATOR_INNER * m),
        "c": np.zeros(OPERATOR_ROWS * m),
    }


def _calls(n, library, array):
    """The step's 30 calls as (kernel, arguments) built by `library`/`array`."""
    m = n // OPERATOR_INNER
    shapes = {
        "axpy": ("app_axpy", ("y", "x", 1e-3, n)),
        "smooth": ("app_smooth", ("s", "u", n)),
        "relax": ("app_relax", ("u", "v", "s", n)),
        "operator": ("app_operator", ("a", "b", "c", m)),
    }
    calls = []
    for index in range(STEP_KERNELS):
        name, arguments = shapes[CYCLE[index % len(CYCLE)]]
        calls.append((library(name), tuple(array(item) if isinstance(item, str) else item
                                           for item in arguments)))
    return calls


class CtypesStep:
    """The peer: the same .so functions called through ctypes.

    Parameters
    ----------
    path : str
        Path of ``libbench_app.so``.
    n : int
        Elements per array.
    work : int
        Python work per kernel (see :func:`busy_loop_count`).
    """

    def __init__(self, path, n, work):
        self.library = ctypes.CDLL(path)
        self.arrays = _arrays(n)
        self.work = work

        def by_pointer(value):
            if isinstance(value, np.ndarray):
                return ctypes.c_void_p(value.ctypes.data)
            if isinstance(value, float):
                return ctypes.byref(ctypes.c_double(value))
            return ctypes.byref(ctypes.c_int64(value))

        def function(name):
            fn = getattr(self.library, name)
            fn.restype = None
            return fn

        self.calls = [(fn, tuple(by_pointer(a) for a in arguments))
                      for fn, arguments in _calls(n, function, self.arrays.__getitem__)]

    def step(self):
        """Run one step."""
        work = self.work
        for fn, arguments in self.calls:
            fn(*arguments)
            python_work(work)

    def results(self):
        """The arrays the step writes, as host copies."""
        return {name: self.arrays[name].copy() for name in ("y", "u", "s", "c")}


class PymicStep:
    """pymic: the same kernels invoked on the default stream.

    Parameters
    ----------
    stream, library
        Device 0's default stream and ``libbench_app.so`` loaded there.
    n, work : int
        As for :class:`CtypesStep`.
    """

    def __init__(self, stream, library, n, work):
        self.stream = stream
        self.work = work
        host = _arrays(n)
        self.device_arrays = {name: stream.bind(value) for name, value in host.items()}
        stream.sync()
        self.calls = _calls(n, lambda name: getattr(library, name),
                            self.device_arrays.__getitem__)

    def step_sync_each(self):
        """Run one step with a sync after every kernel."""
        stream, work = self.stream, self.work
        invoke, sync = stream.invoke, stream.sync
        for kernel, arguments in self.calls:
            invoke(kernel, *arguments)
            sync()
            python_work(work)

    def step_sync_once(self):
        """Run one step with one sync at its end."""
        stream, work = self.stream, self.work
        invoke = stream.invoke
        for kernel, arguments in self.calls:
            invoke(kernel, *arguments)
            python_work(work)
        stream.sync()

    def results(self):
        """The arrays the step writes, copied back to the host."""
        hosts = {name: self.device_arrays[name].update_host().array
                 for name in ("y", "u", "s", "c")}
        self.stream.sync()  # update_host is asynchronous
        return {name: array.copy() for name, array in hosts.items()}


def check_same(pymic_results, peer_results, steps):
    """Raise AssertionError unless pymic computed what the peer computed.

    Parameters
    ----------
    pymic_results, peer_results : dict of str to ndarray
        Arrays after the same number of steps.
    steps : int
        Steps taken (for the message).
    """
    for name, expected in peer_results.items():
        if not np.allclose(pymic_results[name], expected, rtol=1e-12, atol=1e-12):
            raise AssertionError(f"after {steps} steps, array {name} differs from the ctypes peer's")


# Each contender runs in a process of its own.  In one process the peer
# and pymic would share libgomp, whose idle threads spin only briefly once
# more threads than CPUs belong to its teams (two masters with a team each
# are enough on 2 cores): the peer would be slowed by pymic's presence and
# the comparison would say nothing.  Blocks alternate between the
# processes; the idle one sleeps.
SERVE_SCRIPT = pathlib.Path(__file__).resolve()
SETTLE_SECONDS = 0.02  # lets the previous block's spinning threads go quiet
# The operator kernel splits its columns over the OpenMP team and calls one
# small dgemm per member: OpenBLAS's own thread pool would only compete
# with the team's threads for the two cores (in both contenders).
CHILD_ENVIRONMENT = {"OPENBLAS_NUM_THREADS": "1"}


def serve(contender, kernel_dir, n, work, check_path):
    """Child process: set up `contender`, then run blocks on request.

    Parameters
    ----------
    contender : {'ctypes', 'pymic-each', 'pymic-once'}
        What this process runs (pymic with one of the two sync patterns).
    kernel_dir : str
        Directory of the benchmark kernels.
    n, work : int
        Array size and Python work per kernel.
    check_path : str
        Where the arrays after two warm-up steps are saved (``.npz``).

    Notes
    -----
    Reads lines ``<mode> <steps>`` from stdin (mode ``step`` for ctypes,
    ``each`` or ``once`` for pymic) and answers each with a JSON list of
    step durations in nanoseconds; an empty line or EOF ends the process.
    """
    from context import Context, pymic_default_stream

    context = Context(quick=False, kernel_dir=pathlib.Path(kernel_dir))
    if contender == "ctypes":
        runner = CtypesStep(context.kernel_library("bench_app"), n, work)
        modes = {"step": runner.step}
        runner.step()
        runner.step()
    else:  # "pymic-each" or "pymic-once": one sync pattern per process
        _, _, stream, library = pymic_default_stream(context, "bench_app")
        runner = PymicStep(stream, library, n, work)
        mode = contender.split("-")[1]
        modes = {mode: {"each": runner.step_sync_each, "once": runner.step_sync_once}[mode]}
        modes[mode]()
        modes[mode]()
    np.savez(check_path, **runner.results())
    print("ready", flush=True)
    import gc

    gc.disable()
    for line in sys.stdin:
        if not line.strip():
            break
        mode, steps = line.split()
        step, samples = modes[mode], []
        for _ in range(int(steps)):
            start = perf_ns()
            step()
            samples.append(perf_ns() - start)
        print(json.dumps(samples), flush=True)


class Contender:
    """A child process running one contender (see :func:`serve`).

    Parameters
    ----------
    contender : {'ctypes', 'pymic-each', 'pymic-once'}
        What the process runs.
    kernel_dir : path-like
        Directory of the benchmark kernels.
    n, work : int
        Array size and Python work per kernel.
    check_path : str
        Where the process saves its arrays after two warm-up steps.
    """

    def __init__(self, contender, kernel_dir, n, work, check_path):
        command = [sys.executable, str(SERVE_SCRIPT), contender, str(kernel_dir), str(n),
                   str(work), str(check_path)]
        self.process = subprocess.Popen(command, stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                        text=True, env=dict(os.environ, **CHILD_ENVIRONMENT))
        if self.process.stdout.readline().strip() != "ready":
            self.close()
            raise RuntimeError(f"the {contender} process of the application loop failed to start")

    def block(self, mode, steps):
        """Run `steps` steps in `mode`; return their durations in ns."""
        time.sleep(SETTLE_SECONDS)
        self.process.stdin.write(f"{mode} {steps}\n")
        self.process.stdin.flush()
        return json.loads(self.process.stdout.readline())

    def close(self):
        """End the process."""
        try:
            self.process.stdin.close()
        except OSError:
            pass
        self.process.wait(timeout=30)


def measure_steps(kernel_dir, n, work, steps_per_block, rounds, with_once=True):
    """Interleave the contenders' processes; each sample is one step in µs.

    Parameters
    ----------
    kernel_dir : path-like
        Directory of the benchmark kernels.
    n, work : int
        Array size and Python work per kernel.
    steps_per_block, rounds : int
        Steps per block and blocks per contender.
    with_once : bool, optional
        Also time pymic with one sync per step.

    Returns
    -------
    dict of str to dict
        Summaries in microseconds per step, keys ``ctypes``, ``pymic_each``
        and (with `with_once`) ``pymic_once``.
    """
    # pymic with one sync per step gets a process of its own too: a real
    # application uses one pattern, and each pattern leaves its own threads.
    names = {"ctypes": ("ctypes", "step"), "pymic_each": ("pymic-each", "each")}
    if with_once:
        names["pymic_once"] = ("pymic-once", "once")
    processes = {}
    with tempfile.TemporaryDirectory() as scratch:
        try:
            for name, (kind, _) in names.items():
                path = os.path.join(scratch, f"{name}.npz")
                processes[name] = (Contender(kind, kernel_dir, n, work, path), path)
            with np.load(processes["ctypes"][1]) as expected:
                for name in names:
                    with np.load(processes[name][1]) as got:
                        check_same(dict(got), dict(expected), 2)
            blocks = {name: (lambda name=name: processes[name][0].block(names[name][1],
                                                                        steps_per_block))
                      for name in names}
            samples = interleave(blocks, rounds)
        finally:
            for process, _ in processes.values():
                process.close()
    return {name: summarize(values, 1e-3) for name, values in samples.items()}


def step_rows(bench, label, summaries, each_bound, once_bound):
    """Verdict rows: pymic per step against ctypes, both sync patterns.

    Parameters
    ----------
    bench : str
        ``"B9"`` or ``"B10"``.
    label : str
        What the rows are about (e.g. ``"n = 100,000"``).
    summaries : dict
        Step summaries (µs) with keys ``ctypes``, ``pymic_each`` and
        optionally ``pymic_once``.
    each_bound, once_bound : float or None
        Targets for pymic / ctypes (None: no row for that pattern).

    Returns
    -------
    list of dict
        Target rows; the value is pymic's median step over ctypes's.
    """
    peer = summaries["ctypes"]["median"]
    rows = []
    for key, bound, pattern in (("pymic_each", each_bound, "sync after each kernel"),
                                ("pymic_once", once_bound, "one sync per step")):
        if bound is None or key not in summaries:
            continue
        mine = summaries[key]["median"]
        rows.append(targets.check(
            bench, f"{label}, {pattern}: ≤ {bound:g}× ctypes", f"{mine:.0f} µs/step",
            f"ctypes {peer:.0f} µs/step", mine / peer, "<=", bound))
    return rows


if __name__ == "__main__":
    sys.path.insert(0, str(SERVE_SCRIPT.parent))
    serve(sys.argv[1], sys.argv[2], int(sys.argv[3]), int(sys.argv[4]), sys.argv[5])
