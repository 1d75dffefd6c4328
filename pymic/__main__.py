"""``python -m pymic``: look at devices, test them, read traces, manage the cache.

Commands::

    python -m pymic info                 devices, limits, settings, versions
    python -m pymic selftest             run a built-in kernel on every device
    python -m pymic trace-summary FILE   per-kernel times, host waits, idle gaps
    python -m pymic trace-merge FILE... -o OUT   per-rank traces into one timeline
    python -m pymic cache [list|clear]   the load_source compile cache
    python -m pymic --version            pymic's version
"""

import argparse
import os
import platform
import statistics
import sys
import time
from collections.abc import Sequence

import numpy

import pymic
from pymic import _compile, _engine, _signatures, tracing

# Settings pymic reads, and what they mean, for `info`.
ENVIRONMENT = (
    ("PYMIC_DEVICES", "device layout"),
    ("PYMIC_MEMORY_LIMIT", "memory limit per device"),
    ("PYMIC_SPIN_NS", "spin window of waits (ns)"),
    ("PYMIC_DEBUG", "debug level"),
    ("PYMIC_LIBRARY_PATH", "library search path"),
    ("PYMIC_CC", "compiler for load_source"),
    ("CC", "compiler for load_source (if PYMIC_CC is unset)"),
    ("PYMIC_CACHE_DIR", "compile cache"),
    ("PYMIC_TRACE", "trace of the whole run: 1 = records to stdout, else a file"),
    ("PYMIC_TRACE_STACKS", "call sites in traces: none, compact, full"),
    ("OMP_NUM_THREADS", "OpenMP (the device sets its team size itself)"),
    ("OMP_PROC_BIND", "OpenMP"),
    ("OMP_PLACES", "OpenMP"),
    ("OMP_WAIT_POLICY", "OpenMP"),
    ("GOMP_SPINCOUNT", "GNU OpenMP"),
    ("KMP_BLOCKTIME", "LLVM/Intel OpenMP"),
)


def _size(nbytes: float) -> str:
    for unit in ("B", "KiB", "MiB", "GiB", "TiB"):
        if nbytes < 1024 or unit == "TiB":
            return f"{nbytes:.0f} {unit}" if unit == "B" else f"{nbytes:.1f} {unit}"
        nbytes /= 1024.0
    return str(nbytes)


def _openmp_runtimes() -> list[str]:
    """Shared objects of OpenMP runtimes mapped into this process."""
    found = set()
    try:
        with open("/proc/self/maps") as maps:
            for line in maps:
                path = line.split()[-1] if "/" in line else ""
                name = os.path.basename(path)
                if name.startswith(("libgomp", "libomp", "libiomp")):
                    found.add(path)
    except OSError:
        pass
    return sorted(found)


def _compiler_version() -> str:
    try:
        import subprocess
        command = _compile.compiler_command()
        result = subprocess.run([*command, "--version"], capture_output=True, text=True,
                                timeout=30)
        first = (result.stdout or result.stderr).strip().splitlines()
        return f"{' '.join(command)}: {first[0] if first else '?'}"
    except (OSError, ValueError) as error:
        return f"unavailable ({error})"


def command_info(args: argparse.Namespace) -> int:
    """Print devices, limits, settings in force, OpenMP runtime, versions."""
    print(f"pymic {pymic.__version__} ({os.path.dirname(pymic.__file__)})")
    print(f"Python {platform.python_version()} ({sys.executable}), NumPy {numpy.__version__}")
    print(f"machine: {platform.machine()}, {os.cpu_count()} CPUs, "
          f"{len(os.sched_getaffinity(0))} usable by this process")
    print()
    print(f"devices: {pymic.number_of_devices()}")
    for device_id in pymic.devices:
        device = pymic.devices[device_id]
        print(f"  device {device_id}: kind {device.kind}, name {device.name}, "
              f"{device.ncores} cores (CPUs {','.join(map(str, device.cpus))})")
        print(f"    memory: {_size(device.memory_used)} used of {_size(device.memory_total)}"
              f" (limit)")
    print()
    print("limits:")
    print(f"  kernel arguments per invoke: {pymic.MAX_KERNEL_ARGS}")
    print()
    print("settings in force:")
    print(f"  spin window: {_engine.get_spin_ns()} ns, debug level: {_engine.get_debug_level()}")
    print(f"  compile cache: {_compile.cache_dir()}")
    for name, meaning in ENVIRONMENT:
        value = os.environ.get(name)
        shown = repr(value) if value is not None else "(unset)"
        print(f"  {name:20} {shown:24} {meaning}")
    print()
    runtimes = _openmp_runtimes()
    print("OpenMP runtime: " + (", ".join(runtimes) if runtimes else "none mapped"))
    print(f"C compiler: {_compiler_version()}")
    return 0


def _time_b1(stream: pymic.OffloadStream, kernel: pymic.KernelHandle, iterations: int) -> float:
    """Median invoke+sync latency of a kernel doing nothing, in microseconds."""
    target = stream.empty((1,))
    samples = []
    for _ in range(iterations):
        start = time.perf_counter_ns()
        stream.invoke(kernel, target, 0.0, 0)
        stream.sync()
        samples.append(time.perf_counter_ns() - start)
    return statistics.median(samples) / 1000.0


def command_selftest(args: argparse.Namespace) -> int:
    """On every device: load a built-in kernel, invoke it, check, time B1."""
    failures = 0
    for device_id in pymic.devices:
        device = pymic.devices[device_id]
        try:
            kernel = device._array_kernel("pymic_array_fill_float64")
            stream = device.create_stream()
            n = 1000
            array = stream.empty((n,), dtype=numpy.float64, update_host=False)
            stream.invoke(kernel, array, 2.5, n)
            array.update_host()
            stream.sync()
            correct = bool(numpy.all(array.array == 2.5))
            latency = _time_b1(stream, kernel, args.iterations)
        except pymic.OffloadError as error:
            print(f"device {device_id}: FAIL ({error})")
            failures += 1
            continue
        status = "ok" if correct else "FAIL (wrong result)"
        failures += not correct
        print(f"device {device_id} ({device.kind} {device.name}, {device.ncores} cores): "
              f"{status}; empty invoke+sync median {latency:.2f} us over {args.iterations}")
    print("selftest passed" if not failures else f"selftest FAILED on {failures} device(s)")
    return 1 if failures else 0


def command_trace_summary(args: argparse.Namespace) -> int:
    """Print per-kernel times, host waits and idle gaps of a trace file."""
    try:
        events = tracing.load_events(args.file)
        text = tracing.format_summary(tracing.summarize(events))
    except OSError as error:
        print(f"pymic trace-summary: cannot read {args.file}: {error.strerror or error}",
              file=sys.stderr)
        return 2
    except (ValueError, KeyError, TypeError) as error:
        print(f"pymic trace-summary: {args.file} is not a trace file: {error}", file=sys.stderr)
        return 2
    print(text, end="")
    return 0


def command_trace_merge(args: argparse.Namespace) -> int:
    """Merge per-rank trace files into one timeline with a process per rank."""
    try:
        count = tracing.merge_traces(args.files, args.output)
    except OSError as error:
        print(f"pymic trace-merge: {error.filename or ''}: {error.strerror or error}",
              file=sys.stderr)
        return 2
    except (ValueError, KeyError, TypeError) as error:
        print(f"pymic trace-merge: not a trace file: {error}", file=sys.stderr)
        return 2
    print(f"merged {len(args.files)} trace file(s), {count} events, into {args.output}")
    return 0


def command_cache(args: argparse.Namespace) -> int:
    """List or clear the compile cache."""
    if args.action == "clear":
        removed = _compile.clear_cache()
        print(f"removed {removed} compiled kernel(s) from {_compile.cache_dir()}")
        return 0
    if args.action == "dir":
        print(_compile.cache_dir())
        return 0
    entries = _compile.cache_entries()
    print(f"compile cache {_compile.cache_dir()}: {len(entries)} kernel(s)")
    for entry in entries:
        created = time.strftime("%Y-%m-%d %H:%M", time.localtime(entry["created"]))
        print(f"  {entry['key'][:16]}  {_size(entry['bytes']):>10}  {created}")
        for line in _kernel_lines(entry["source"] or entry["source_head"]):
            print(f"      {line}")
    return 0


def _kernel_lines(source: str) -> list[str]:
    """Each PYMIC_KERNEL function of `source` as invoke checks it: its parsed
    prototype, or why it stays unchecked."""
    lines = []
    for name, prototype in _signatures.kernels_of_source(source).items():
        if isinstance(prototype, _signatures.SignatureError):
            lines.append(f"{name}: unchecked ({prototype})")
        else:
            lines.append(str(prototype))
    return lines


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command line.

    Parameters
    ----------
    argv : list of str or None
        Arguments (default ``sys.argv[1:]``).

    Returns
    -------
    int
        The exit status: 1 after an error, or when the reader of the output
        went away (``python -m pymic info | head -3``).
    """
    try:
        return _run(argv)
    except BrokenPipeError:
        # Stop quietly, as Unix tools do, and keep the interpreter's final
        # flush of stdout from failing again.
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        os.close(devnull)
        return 1


def _run(argv: Sequence[str] | None) -> int:
    parser = argparse.ArgumentParser(prog="python -m pymic", description=__doc__.splitlines()[0])
    parser.add_argument("--version", action="version", version=f"pymic {pymic.__version__}")
    commands = parser.add_subparsers(dest="command", required=True)
    commands.add_parser("info", help="devices, limits, settings, versions")
    selftest = commands.add_parser("selftest", help="run a built-in kernel on every device")
    selftest.add_argument("--iterations", type=int, default=2000,
                          help="invoke+sync round trips timed per device (default 2000)")
    summary = commands.add_parser("trace-summary", help="summarise a trace file")
    summary.add_argument("file")
    merge = commands.add_parser("trace-merge",
                                help="merge per-rank trace files into one timeline")
    merge.add_argument("files", nargs="+", metavar="FILE")
    merge.add_argument("-o", "--output", required=True, help="the merged trace file")
    cache = commands.add_parser("cache", help="list or clear the compile cache")
    cache.add_argument("action", nargs="?", choices=("list", "clear", "dir"), default="list")
    try:
        args = parser.parse_args(argv)
    except SystemExit:
        sys.stdout.flush()  # --version, --help: a closed pipe shows here
        raise
    handlers = {"info": command_info, "selftest": command_selftest,
                "trace-summary": command_trace_summary, "trace-merge": command_trace_merge,
                "cache": command_cache}
    try:
        status = handlers[args.command](args)
    except pymic.OffloadError as error:
        print(f"pymic {args.command}: {error}", file=sys.stderr)
        return 1
    sys.stdout.flush()
    return status


if __name__ == "__main__":
    sys.exit(main())
