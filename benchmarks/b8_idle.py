"""B8: CPU time burnt by an idle process that holds pymic streams.

Child processes set up their offload machinery, use it once, then sleep;
each measures its own CPU time (all threads: getrusage(RUSAGE_SELF)) over
the idle window.  Peers idle the same way: a bare Python process (the
floor), a ThreadPoolExecutor with used workers, and PyOpenCL queues on
PoCL.  All children idle at the same time, so the window costs 5 s once.
"""

import json
import subprocess
import sys

import targets

NAME = "idle cost of a process holding streams"
IDLE_SECONDS = 5.0
STREAMS = 4

# Shared by every child: measure CPU time over an idle window and print it.
_MEASURE = """
import json, os, resource, sys, time
def threads():
    with open("/proc/self/status") as status:
        return int(next(l for l in status if l.startswith("Threads:")).split()[1])
def thread_ticks():
    ticks = {}
    for task in os.listdir("/proc/self/task"):
        try:
            with open(f"/proc/self/task/{task}/stat") as stat:
                fields = stat.read().rsplit(")", 1)[1].split()
            ticks[task] = int(fields[11]) + int(fields[12])  # utime + stime
        except OSError:
            pass
    return ticks
def idle_and_report(seconds):
    ticks_before = thread_ticks()
    before, start = resource.getrusage(resource.RUSAGE_SELF), time.monotonic()
    time.sleep(seconds)
    after, wall = resource.getrusage(resource.RUSAGE_SELF), time.monotonic() - start
    ticks_after = thread_ticks()
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    busiest = max((ticks_after[t] - ticks_before.get(t, 0) for t in ticks_after), default=0)
    print(json.dumps({"cpu_seconds": cpu, "wall_seconds": wall, "threads": threads(),
                      "busiest_thread_seconds": busiest / os.sysconf("SC_CLK_TCK")}))
"""

_SETUPS = {
    "pymic": """
import pymic
device = pymic.devices[0]
library = device.load_library(sys.argv[2])
streams = [device.get_default_stream()] + [device.create_stream() for _ in range({streams})]
for stream in streams:
    stream.invoke(library.bench_empty)
for stream in streams:
    stream.sync()
""",
    "python": """
pass
""",
    "threadpool": """
from concurrent.futures import ThreadPoolExecutor
pool = ThreadPoolExecutor(max_workers={streams})
list(pool.map(abs, range(100)))
""",
    "pocl": """
import pyopencl as cl
devices = [d for p in cl.get_platforms() for d in p.get_devices(device_type=cl.device_type.CPU)]
context = cl.Context(devices=devices[:1])
empty = cl.Program(context, "__kernel void empty(void) {{}}").build().empty
queues = [cl.CommandQueue(context) for _ in range({streams})]
for queue in queues:
    cl.enqueue_nd_range_kernel(queue, empty, (1,), None)
    queue.finish()
""",
}


def _start(name, library_path):
    script = _MEASURE + _SETUPS[name].format(streams=STREAMS) + \
        "\nidle_and_report(float(sys.argv[1]))\n"
    return subprocess.Popen([sys.executable, "-c", script, str(IDLE_SECONDS), library_path],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def _collect(process):
    try:
        out, err = process.communicate(timeout=IDLE_SECONDS + 60)
    except subprocess.TimeoutExpired:
        process.kill()
        return {"error": "did not finish in time"}
    if process.returncode != 0:
        lines = [line for line in err.strip().splitlines() if line]
        return {"error": f"exit {process.returncode}: {lines[-1] if lines else ''}"}
    figures = json.loads(out.strip().splitlines()[-1])
    figures["percent_of_one_core"] = 100.0 * figures["cpu_seconds"] / figures["wall_seconds"]
    return figures


def _text(figures):
    if "error" in figures:
        return f"not run ({figures['error']})"
    return f"{figures['percent_of_one_core']:.3f}% ({figures['threads']} threads)"


def run(context):
    """Run B8 and judge its target.

    Parameters
    ----------
    context : Context
        Run options (locates the kernel library for the pymic child).

    Returns
    -------
    dict
        ``figures`` (CPU seconds, wall seconds, % of one core and thread
        count per child) and ``targets``.
    """
    library_path = context.kernel_library("bench_kernels")
    processes = {name: _start(name, library_path) for name in _SETUPS}
    figures = {name: _collect(process) for name, process in processes.items()}
    pymic = figures["pymic"]
    if "error" in pymic:
        raise RuntimeError(f"pymic idle child failed: {pymic['error']}")
    row = targets.check(
        "B8", f"idle process with {STREAMS + 1} streams < 1% of one core over {IDLE_SECONDS:g} s",
        _text(pymic),
        "; ".join(f"{name} {_text(figures[name])}" for name in ("python", "threadpool", "pocl")),
        pymic["percent_of_one_core"], "<", 1.0,
        value_text=f"{pymic['percent_of_one_core']:.3f}%", note="target is absolute; peers for scale")
    table = [[name, _text(data), f"{data.get('cpu_seconds', float('nan')) * 1e3:.1f}",
              f"{data.get('busiest_thread_seconds', float('nan')) * 1e3:.0f}"]
             for name, data in figures.items()]
    return {"figures": figures,
            "tables": [{"title": f"CPU time over {IDLE_SECONDS:g} s idle",
                        "columns": ["process", "% of one core (threads)", "CPU ms",
                                    "busiest thread ms (10 ms ticks)"],
                        "rows": table}],
            "targets": [row]}
