"""Facts about the machine and software a run was measured on."""

import datetime
import importlib.metadata
import os
import platform
import subprocess
import sys
import time


def _cpu_model():
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as cpuinfo:
            for line in cpuinfo:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def _memory_gib():
    try:
        with open("/proc/meminfo", encoding="utf-8") as meminfo:
            for line in meminfo:
                if line.startswith("MemTotal:"):
                    return round(int(line.split()[1]) / 2**20, 1)
    except OSError:
        pass
    return None


def _package_version(name):
    try:
        return importlib.metadata.version(name)
    except importlib.metadata.PackageNotFoundError:
        return None


def _compiler_version():
    try:
        completed = subprocess.run([os.environ.get("CC", "cc"), "--version"],
                                   capture_output=True, text=True, timeout=10, check=False)
        return completed.stdout.splitlines()[0] if completed.stdout else None
    except (OSError, subprocess.SubprocessError):
        return None


def _hypervisor():
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as cpuinfo:
            return " hypervisor" in cpuinfo.read()
    except OSError:
        return None


def load_average():
    """Return the 1, 5 and 15 minute load averages (a noise indicator).

    Returns
    -------
    list of float or None
        None where the OS does not report them.
    """
    try:
        return [round(value, 2) for value in os.getloadavg()]
    except OSError:
        return None


def collect(unset_environment):
    """Describe this machine and the software versions the run uses.

    Parameters
    ----------
    unset_environment : dict of str to str
        Variables the runner removed from the environment before starting
        (OPENBLAS_CORETYPE, OPENBLAS_L2_SIZE) with their former values.

    Returns
    -------
    dict
        JSON-ready facts: date, CPU, cores, memory, OS, Python and package
        versions, compiler, pymic/OpenBLAS environment, load average.
    """
    packages = ["pymic-offload", "numpy", "pyopencl", "pocl-binary-distribution",
                "scipy-openblas32", "threadpoolctl", "matplotlib"]
    return {
        "date_utc": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        "cpu_model": _cpu_model(),
        "logical_cpus": os.cpu_count(),
        "cpus_usable": len(os.sched_getaffinity(0)),
        "virtual_machine": _hypervisor(),
        "memory_gib": _memory_gib(),
        "os": platform.platform(),
        "python": sys.version.split()[0],
        "python_implementation": platform.python_implementation(),
        "compiler": _compiler_version(),
        "packages": {name: _package_version(name) for name in packages},
        "environment": {key: value for key, value in os.environ.items()
                        if key.startswith(("PYMIC_", "OMP_", "OPENBLAS_"))},
        "unset_for_benchmarks": unset_environment,
        "load_average_start": load_average(),
    }


def _busy_cpu_seconds():
    """CPU seconds the whole machine spent busy since boot (/proc/stat)."""
    try:
        with open("/proc/stat", encoding="utf-8") as stat:
            fields = [int(value) for value in stat.readline().split()[1:]]
    except (OSError, ValueError):
        return None
    # user nice system idle iowait irq softirq steal (guest time is inside user)
    user, nice, system, _idle, _iowait, irq, softirq = fields[:7]
    return (user + nice + system + irq + softirq) / os.sysconf("SC_CLK_TCK")


def _own_cpu_seconds():
    """CPU seconds of this process and of every child it has waited for."""
    import resource

    total = 0.0
    for who in (resource.RUSAGE_SELF, resource.RUSAGE_CHILDREN):
        usage = resource.getrusage(who)
        total += usage.ru_utime + usage.ru_stime
    return total


class OtherLoad:
    """Measures how many cores other processes kept busy during a span.

    A benchmark on a shared 2-core machine is only as good as the quiet it
    ran in: this turns "the numbers look odd" into a figure on the page.
    Create it before the span, call :meth:`cores` after it.
    """

    def __init__(self):
        self._start = (time.monotonic(), _busy_cpu_seconds(), _own_cpu_seconds())

    def cores(self):
        """Average number of cores used by processes outside this run.

        Returns
        -------
        float or None
            Busy CPU seconds of the machine minus this run's own (this
            process and its waited-for children), per wall second since
            construction; None where /proc/stat is unavailable.
        """
        wall_start, busy_start, own_start = self._start
        busy_end = _busy_cpu_seconds()
        if busy_start is None or busy_end is None:
            return None
        wall = max(time.monotonic() - wall_start, 1e-9)
        others = (busy_end - busy_start) - (_own_cpu_seconds() - own_start)
        return round(max(0.0, others) / wall, 2)


def wait_for_quiet(limit_seconds, threshold_cores=0.2, window_seconds=1.0):
    """Wait until other processes leave the machine (nearly) idle.

    Parameters
    ----------
    limit_seconds : float
        Give up after this long and let the caller measure anyway.
    threshold_cores : float, optional
        Quiet means other processes used fewer cores than this over one
        window.
    window_seconds : float, optional
        Length of each observation.

    Returns
    -------
    tuple
        ``(seconds waited, cores used by others in the last window)``.
    """
    start = time.monotonic()
    while True:
        observation = OtherLoad()
        time.sleep(window_seconds)
        cores = observation.cores()
        waited = time.monotonic() - start
        if cores is None or cores < threshold_cores or waited >= limit_seconds:
            return round(waited, 1), cores



def task_ids():
    """Thread ids of this process (from /proc/self/task).

    Returns
    -------
    set of int
        Empty if /proc is unavailable.
    """
    try:
        return {int(task) for task in os.listdir("/proc/self/task")}
    except OSError:
        return set()


def last_cpu(thread_id):
    """The CPU a thread of this process last ran on, or None if unknown.

    Parameters
    ----------
    thread_id : int
        A thread id from :func:`task_ids`.

    Returns
    -------
    int or None
        Field 39 ("processor") of /proc/self/task/<id>/stat.
    """
    try:
        with open(f"/proc/self/task/{thread_id}/stat", encoding="utf-8") as stat:
            # the command name may hold spaces: split after its closing ')'
            fields = stat.read().rsplit(")", 1)[1].split()
        return int(fields[36])  # field 39 overall: 37th after pid and comm
    except (OSError, ValueError, IndexError):
        return None


class ThreadPlacement:
    """Where the Python thread and the threads pymic started last ran.

    Small hand-offs between the Python thread and a stream's worker cost
    several times more when the scheduler has put both on one core (seen:
    about 0.2 us against 2.5 us per queued 4 KiB transfer), and the
    placement differs from process to process.  Create this before pymic
    starts its threads; call :meth:`snapshot` right after a measurement.
    """

    def __init__(self):
        self._before = task_ids()
        self._tracked = None

    def track(self):
        """Freeze the set of threads to report: those started until now.

        Call it once pymic's threads exist and before peers start theirs.
        """
        self._tracked = task_ids() - self._before

    def snapshot(self):
        """Return the placement now.

        Returns
        -------
        dict
            ``main_cpu`` (the Python thread), ``new_thread_cpus`` (threads
            started between construction and :meth:`track`, or since
            construction if it was not called), ``shares_core`` (main's
            CPU among them).
        """
        main_cpu = last_cpu(os.getpid())
        tracked = self._tracked if self._tracked is not None else task_ids() - self._before
        others = [last_cpu(tid) for tid in sorted(tracked)]
        others = [cpu for cpu in others if cpu is not None]
        return {"main_cpu": main_cpu, "new_thread_cpus": others,
                "shares_core": main_cpu in others}


def placement_note(placement):
    """One sentence for the results page describing a thread placement.

    Parameters
    ----------
    placement : dict
        From :meth:`ThreadPlacement.snapshot`.

    Returns
    -------
    str
        Where the Python thread and pymic's threads last ran.
    """
    if not placement or placement.get("main_cpu") is None:
        return "Thread placement unknown (/proc not readable)."
    return (f"After the measurement the Python thread was on CPU {placement['main_cpu']} and "
            f"the threads pymic started on CPUs {placement['new_thread_cpus']} "
            "(the scheduler's choice, which differs between runs: see benchmarks/README.md).")
