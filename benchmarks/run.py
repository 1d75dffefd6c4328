"""Run the pymic benchmark suite (B1-B13) and write results/.

    python run.py [--quick] [--only B1,B3] [--kernels build] [--results results]

Each benchmark runs in a child process of its own: a crash or a hang in one
(pymic is young) is recorded in the table and the rest still run, and no
benchmark inherits another's threads, allocator state or BLAS pools.  A full
run writes results/latest.json, results/README.md and the PNG plots, and
regenerates the top-level README's speed figures (readme_figures.py); a
--quick or --only run writes to results/scratch/ instead, so committed
results always come from one complete run.
"""

import argparse
import importlib
import json
import os
import pathlib
import subprocess
import sys
import tempfile
import time
import traceback

# Must happen before anything imports NumPy or OpenBLAS: these variables pin
# an old OpenBLAS core and slow current builds down.  Children inherit this.
SLOW_BLAS_VARIABLES = ("OPENBLAS_CORETYPE", "OPENBLAS_L2_SIZE")
UNSET = {name: os.environ.pop(name) for name in SLOW_BLAS_VARIABLES if name in os.environ}

HERE = pathlib.Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

# id -> (module, time limit in seconds).  A normal full run takes a fraction
# of each limit; the limits only stop a hung benchmark from stalling the rest.
BENCHMARKS = {
    "B1": ("b1_latency", 150),
    "B2": ("b2_throughput", 120),
    "B3": ("b3_transfers", 300),
    "B4": ("b4_bind", 120),
    "B5": ("b5_array_ops", 300),
    "B6": ("b6_dgemm", 360),
    "B7": ("b7_pipeline", 120),
    "B8": ("b8_idle", 90),
    "B9": ("b9_app_loop", 300),
    "B10": ("b10_under_load", 300),
    "B11": ("b11_proc", 300),
    "B12": ("b12_mpi_stencil", 300),
    "B13": ("b13_mpi_device", 900),
}


def _parse_arguments(argv):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="fewer iterations and sizes")
    parser.add_argument("--only", default="", help="comma-separated ids, e.g. B1,B3")
    parser.add_argument("--kernels", default=str(HERE / "build"),
                        help="directory holding libbench_kernels.so and libbench_dgemm.so")
    parser.add_argument("--results", default=str(HERE / "results"), help="output directory")
    parser.add_argument("--quiet-wait", type=float, default=None,
                        help="before each benchmark, wait up to this many seconds for "
                             "other processes to leave the cores idle (0: do not wait; "
                             "default 30, or 0 with --quick)")
    parser.add_argument("--child", help=argparse.SUPPRESS)
    parser.add_argument("--out", help=argparse.SUPPRESS)
    return parser.parse_args(argv)


def _selection(only):
    if not only:
        return list(BENCHMARKS)
    chosen = [item.strip().upper() for item in only.split(",") if item.strip()]
    unknown = [item for item in chosen if item not in BENCHMARKS]
    if unknown:
        raise SystemExit(f"unknown benchmark(s): {', '.join(unknown)}; known: {', '.join(BENCHMARKS)}")
    return chosen


def run_child(bench, arguments):
    """Run one benchmark in this process and write its result as JSON.

    Parameters
    ----------
    bench : str
        Benchmark id.
    arguments : argparse.Namespace
        Parsed command line (``--out`` names the JSON file).

    Returns
    -------
    int
        Process exit status.
    """
    from context import Context

    context = Context(quick=arguments.quick, kernel_dir=pathlib.Path(arguments.kernels))
    module = importlib.import_module(BENCHMARKS[bench][0])
    result = module.run(context)
    result["name"] = module.NAME
    with open(arguments.out, "w", encoding="utf-8") as output:
        json.dump(result, output, default=float)
    return 0


def _title(bench):
    """The benchmark's NAME, or its module name if the module does not import."""
    try:
        return importlib.import_module(BENCHMARKS[bench][0]).NAME
    except Exception:  # reported by the child's own traceback
        return BENCHMARKS[bench][0]


def _failure(bench, reason):
    import targets

    return {"name": _title(bench), "error": reason,
            "targets": [targets.failed(bench, _title(bench), reason)], "figures": {}}


def run_in_child(bench, arguments):
    """Run one benchmark in a child process with a time limit.

    Parameters
    ----------
    bench : str
        Benchmark id.
    arguments : argparse.Namespace
        Parsed command line, passed on to the child.

    Returns
    -------
    dict
        The benchmark's result, or an error record if the child crashed,
        hung or wrote nothing.
    """
    module_name, time_limit = BENCHMARKS[bench]
    with tempfile.TemporaryDirectory() as scratch:
        out = os.path.join(scratch, f"{bench}.json")
        command = [sys.executable, str(HERE / "run.py"), "--child", bench, "--out", out,
                   "--kernels", arguments.kernels] + (["--quick"] if arguments.quick else [])
        import machine

        started, other_load = time.monotonic(), machine.OtherLoad()
        try:
            completed = subprocess.run(command, stderr=subprocess.PIPE, text=True,
                                       timeout=time_limit, check=False)
        except subprocess.TimeoutExpired:
            return _failure(bench, f"no result within {time_limit} s (hang?)")
        elapsed = time.monotonic() - started
        if completed.stderr:
            sys.stderr.write(completed.stderr)
        if completed.returncode != 0 or not os.path.exists(out):
            last_lines = [line for line in completed.stderr.strip().splitlines() if line][-1:]
            reason = f"{module_name} exited with status {completed.returncode}"
            if last_lines:
                reason += f": {last_lines[0].strip()}"
            return _failure(bench, reason)
        with open(out, encoding="utf-8") as result_file:
            result = json.load(result_file)
    result["seconds"] = round(elapsed, 1)
    result["other_processes_cores"] = other_load.cores()
    return result


def main(argv=None):
    """Run the selected benchmarks and write the results.

    Parameters
    ----------
    argv : list of str, optional
        Command line without the program name.

    Returns
    -------
    int
        0 if every benchmark produced its figures, 1 otherwise.
    """
    arguments = _parse_arguments(argv)
    if arguments.child:
        try:
            return run_child(arguments.child, arguments)
        except Exception:
            traceback.print_exc()
            return 1

    import machine
    import plots
    import readme_figures
    import report

    if arguments.quiet_wait is None:
        arguments.quiet_wait = 0.0 if arguments.quick else 30.0
    selection = _selection(arguments.only)
    partial = arguments.quick or len(selection) < len(BENCHMARKS)
    results_dir = pathlib.Path(arguments.results)
    if partial:
        results_dir = results_dir / "scratch"
    results_dir.mkdir(parents=True, exist_ok=True)

    facts = machine.collect(UNSET)
    whole_run_load = machine.OtherLoad()
    results = {}
    for bench in selection:
        print(f"== {bench} {_title(bench)}", flush=True)
        waited, others_before = (machine.wait_for_quiet(arguments.quiet_wait)
                                 if arguments.quiet_wait > 0 else (0.0, None))
        if waited >= 1.5:
            print(f"   (waited {waited:.0f} s for a quieter machine; others now use "
                  f"{others_before} cores)", flush=True)
        results[bench] = run_in_child(bench, arguments)
        results[bench]["waited_for_quiet_seconds"] = waited
        for row in results[bench]["targets"]:
            print(f"   {row['status']:8} {row['goal']}: {row['pymic']} | {row['peer']} "
                  f"| {row['value_text']}", flush=True)
    facts["load_average_end"] = machine.load_average()
    facts["other_processes_cores"] = whole_run_load.cores()
    run = {"facts": facts, "quick": arguments.quick, "partial": partial,
           "benchmarks": results}
    run["plots"] = plots.draw_all(run, results_dir)
    report.write(run, results_dir, run["plots"])
    print(f"results written to {results_dir}")
    if not partial and results_dir.resolve() == readme_figures.RESULTS.parent:
        # The top-level README quotes these results: regenerate its figures.
        readme_figures.update_readme()
        print(f"speed figures of {readme_figures.README} regenerated")
    return 1 if any("error" in result for result in results.values()) else 0


if __name__ == "__main__":
    sys.exit(main())
