"""B4: bind (allocate device memory + copy) of a 64 MiB array, beside copyto.

The previous OffloadArray is dropped (and its stream-ordered free completed)
before each bind, so a caching allocator can hand the same memory back; the
time covers bind + sync.
"""

import numpy as np

import targets
from context import pymic_default_stream
from timing import interleave, summarize, time_block

NAME = "bind of a 64 MiB array"
NBYTES = 64 * 1024 * 1024


def run(context):
    """Run B4 and judge its target.

    Parameters
    ----------
    context : Context
        Run options.

    Returns
    -------
    dict
        ``figures`` (seconds and GB/s for bind and copyto, the first cold
        bind) and ``targets``.
    """
    _, _, stream, _ = pymic_default_stream(context)
    source = np.arange(NBYTES // 8, dtype=np.float64)
    destination = np.empty_like(source)
    destination.fill(0.0)
    holder = {}

    def bind_and_sync():
        holder["bound"] = stream.bind(source)
        stream.sync()

    def drop_previous():
        # Dropping the last array returns its memory (stream-ordered) so a
        # caching allocator can hand it out again; the sync keeps that free
        # out of the next timing.
        holder.pop("bound", None)
        stream.sync()

    def timed_bind():
        drop_previous()
        return time_block(bind_and_sync)

    cold = time_block(bind_and_sync)
    samples_per_round, rounds = context.pick(3, 2), context.pick(8, 2)
    samples = interleave({
        "bind": lambda: [timed_bind() for _ in range(samples_per_round)],
        "copyto": lambda: [time_block(lambda: np.copyto(destination, source))
                           for _ in range(samples_per_round)],
    }, rounds)
    source.fill(-1.0)  # the bound host array; update_host must bring the data back
    holder["bound"].update_host()
    stream.sync()
    if not np.array_equal(source, np.arange(NBYTES // 8, dtype=np.float64)):
        raise AssertionError("bound array's device copy differs from the host array")
    stats = {name: summarize(values) for name, values in samples.items()}
    rates = {name: NBYTES / stat["median"] / 1e9 for name, stat in stats.items()}
    row = targets.check("B4", "bind (allocate + copy) 64 MiB ≥ 0.8× copyto",
                        f"{rates['bind']:.2f} GB/s", f"copyto {rates['copyto']:.2f} GB/s",
                        rates["bind"] / rates["copyto"], ">=", 0.8,
                        note=f"first (cold) bind {NBYTES / cold / 1e9:.2f} GB/s")
    return {"figures": {"seconds": stats, "gb_per_s": rates,
                        "cold_bind_gb_per_s": NBYTES / cold / 1e9},
            "targets": [row]}
