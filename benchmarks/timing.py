"""Shared timing helpers: individual samples, summaries and interleaving.

Every benchmark compares pymic with peers measured in the same process and
the same minutes.  The machine is shared and drifts (other jobs, frequency,
page cache), so contenders never run as one long block each: they take turns
in short blocks, several rounds, and each contender's figure is the median
of all its samples.
"""

import statistics
import time

perf_ns = time.perf_counter_ns


def time_each(operation, count):
    """Time `count` calls of `operation` one by one.

    Parameters
    ----------
    operation : callable
        Called with no arguments; must finish its work before returning
        (an offload includes its sync).
    count : int
        Number of calls.

    Returns
    -------
    list of int
        Duration of each call in nanoseconds.
    """
    samples = []
    clock = perf_ns
    for _ in range(count):
        start = clock()
        operation()
        samples.append(clock() - start)
    return samples


def time_block(operation, repeat=1):
    """Time `repeat` back-to-back calls of `operation` as one block.

    Parameters
    ----------
    operation : callable
        Called with no arguments.
    repeat : int, optional
        Calls inside the timed block.

    Returns
    -------
    float
        Seconds per call (block duration divided by `repeat`).
    """
    start = perf_ns()
    for _ in range(repeat):
        operation()
    return (perf_ns() - start) / 1e9 / repeat


def percentile(samples, fraction):
    """Return the `fraction` quantile (0..1) of `samples` by nearest rank.

    Parameters
    ----------
    samples : sequence of float
        Non-empty.
    fraction : float
        0.5 is the median, 0.1 the 10th percentile.

    Returns
    -------
    float
        The sample at that rank of the sorted data.
    """
    ordered = sorted(samples)
    index = min(len(ordered) - 1, max(0, round(fraction * (len(ordered) - 1))))
    return ordered[index]


def summarize(samples, scale=1.0):
    """Median, p10, p90, min and count of `samples`, each multiplied by `scale`.

    Parameters
    ----------
    samples : sequence of float
        Non-empty measurements.
    scale : float, optional
        Unit conversion applied to every statistic (e.g. 1e-3 for ns -> us).

    Returns
    -------
    dict
        Keys ``median``, ``p10``, ``p90``, ``min``, ``n``.
    """
    return {
        "median": statistics.median(samples) * scale,
        "p10": percentile(samples, 0.10) * scale,
        "p90": percentile(samples, 0.90) * scale,
        "min": min(samples) * scale,
        "n": len(samples),
    }


def interleave(contenders, rounds):
    """Run each contender's block once per round, alternating the order.

    Parameters
    ----------
    contenders : dict of str to callable
        Each callable runs one block and returns a list of samples.
    rounds : int
        How many times every block runs.  Odd rounds run the contenders in
        reverse order so none is always first after a switch.

    Returns
    -------
    dict of str to list
        All samples of each contender, in the order they were taken.
    """
    samples = {name: [] for name in contenders}
    names = list(contenders)
    for round_index in range(rounds):
        order = names if round_index % 2 == 0 else names[::-1]
        for name in order:
            samples[name].extend(contenders[name]())
    return samples


class Unavailable(Exception):
    """A peer could not be set up on this machine; the message says why."""


class gc_paused:
    """Context manager that keeps Python's cyclic GC from firing mid-timing."""

    def __enter__(self):
        import gc

        self._was_enabled = gc.isenabled()
        gc.collect()
        gc.disable()
        return self

    def __exit__(self, *exc_info):
        import gc

        if self._was_enabled:
            gc.enable()
        return False
