"""Facts about the machine and software a run was measured on."""

import datetime
import importlib.metadata
import os
import platform
import subprocess
import sys


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
    packages = ["pymic", "numpy", "pyopencl", "pocl-binary-distribution",
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
