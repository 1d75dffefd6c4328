"""B9: an application's time step, 30 short OpenMP kernels, against ctypes.

The step (see app_loop.py) runs on pymic's default device (all cores, the
Python thread's included) with a sync after every kernel and, separately,
with one sync per step; the peer calls the same .so functions through
ctypes from the Python thread.  Sizes span 2x10^4 to 4x10^5 doubles per
array.  pymic's arrays are checked against the peer's once per size.  Each
contender runs in a process of its own (see app_loop.measure_steps).
"""

from app_loop import busy_loop_count, measure_steps, step_rows

NAME = "application loop: 30 OpenMP kernels per step"
SIZES = (20_000, 100_000, 400_000)
EACH_BOUND, ONCE_BOUND = 1.1, 1.0


def measure_size(context, n, work, with_once=True):
    """Time one size: ctypes, pymic with a sync per kernel, pymic with one per step.

    Parameters
    ----------
    context : Context
        Run options.
    n : int
        Doubles per array.
    work : int
        Python work per kernel (see app_loop.busy_loop_count).
    with_once : bool, optional
        Also time the one-sync-per-step pattern.

    Returns
    -------
    dict
        Step summaries in µs per contender.
    """
    context.kernel_library("bench_app")  # fails clearly if not built
    steps_per_block = context.pick(5, 2) if n <= 100_000 else context.pick(3, 1)
    return measure_steps(context.kernel_dir, n, work, steps_per_block, context.pick(16, 3),
                         with_once)


def run(context):
    """Run B9 and judge its targets.

    Parameters
    ----------
    context : Context
        Run options.

    Returns
    -------
    dict
        ``figures`` (µs per step for each size and contender), a table and
        ``targets``.
    """
    work = busy_loop_count()
    figures, rows, table = {}, [], []
    for n in SIZES:
        summaries = measure_size(context, n, work)
        figures[str(n)] = summaries
        rows += step_rows("B9", f"n = {n:,}", summaries, EACH_BOUND, ONCE_BOUND)
        for name, stat in summaries.items():
            table.append([f"{n:,}", name, f"{stat['median']:.0f}", f"{stat['p10']:.0f}",
                          f"{stat['p90']:.0f}", f"{stat['median'] / summaries['ctypes']['median']:.2f}"])
    return {"figures": {"step_us": figures, "python_work_iterations": work},
            "tables": [{"title": "µs per step (30 kernels)",
                        "columns": ["n", "contender", "median", "p10", "p90", "÷ ctypes"],
                        "rows": table}],
            "notes": ["Python work between kernels: about 10 µs (a calibrated loop).",
                      "The ctypes peer and pymic use the same libbench_app.so, libgomp and "
                      "OpenBLAS (one thread per team member), each contender and sync pattern "
                      "in a process of its own, blocks alternating.",
                      "With one sync per step nothing can overlap on this device: the kernels' "
                      "OpenMP teams take every core, the Python thread's included, so the "
                      "syncing thread runs the queued kernels itself and the step costs the "
                      "peer's work plus pymic's enqueue and claim (about 1 µs per kernel, "
                      "visible only at the smallest size)."],
            "targets": rows}
