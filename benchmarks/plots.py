"""PNG plots of a run: latency bars, bandwidth and dgemm curves, B7 timeline."""

import pathlib

import matplotlib

matplotlib.use("Agg")  # files only; no display on a build machine
import matplotlib.pyplot as plt  # noqa: E402  (backend must be chosen first)

STAGE_COLOURS = {"h2d": "tab:blue", "kernel": "tab:orange", "d2h": "tab:green"}


def _latency(result, path):
    latency = result["figures"]["latency_us"]
    labels = {"pymic": "pymic\ninvoke+sync", "ctypes": "direct\nctypes",
              "threadpool": "ThreadPool\nExecutor", "pocl": "PyOpenCL\n(PoCL)"}
    names = [name for name in labels if name in latency]
    medians = [latency[name]["median"] for name in names]
    low = [latency[name]["median"] - latency[name]["p10"] for name in names]
    high = [latency[name]["p90"] - latency[name]["median"] for name in names]
    figure, axes = plt.subplots(figsize=(7, 4.5))
    bars = axes.bar([labels[name] for name in names], medians, yerr=[low, high], capsize=5,
                    color=["tab:red" if name == "pymic" else "tab:gray" for name in names])
    for bar, median in zip(bars, medians):
        axes.annotate(f"{median:.2f} µs", (bar.get_x() + bar.get_width() / 2, median),
                      ha="center", va="bottom", xytext=(0, 3), textcoords="offset points")
    axes.set_yscale("log")
    axes.set_ylabel("latency per call (µs, log scale; whiskers p10-p90)")
    missing = result["figures"].get("unavailable", {}).get("pocl")
    title = "B1: empty kernel offload latency (median)"
    axes.set_title(title + (f"\nPoCL not run: {missing}" if missing else ""))
    figure.tight_layout()
    figure.savefig(path, dpi=110)
    plt.close(figure)


def _bandwidth(result, path):
    figures = result["figures"]
    sizes = figures["sizes"]
    figure, axes = plt.subplots(figsize=(8, 5))
    styles = {"h2d": ("tab:blue", "o-"), "d2h": ("tab:green", "s-"), "d2d": ("tab:purple", "^-"),
              "copyto": ("black", "--")}
    for name, (colour, style) in styles.items():
        rates = [figures["bandwidth"][str(size)][name]["gb_per_s"] for size in sizes]
        label = "numpy.copyto (host)" if name == "copyto" else f"pymic {name}"
        axes.plot(sizes, rates, style, color=colour, label=label)
    axes.set_xscale("log", base=2)
    axes.set_xticks(sizes)
    axes.set_xticklabels([f"{s // 2**20} MiB" if s >= 2**20 else f"{s // 1024} KiB"
                          for s in sizes], rotation=45)
    axes.axvline(16 * 2**20, color="gray", linestyle=":", label="target applies from here")
    axes.set_xlabel("transfer size")
    axes.set_ylabel("GB/s (10^9 bytes/s, one direction)")
    axes.set_title("B3: transfer bandwidth against size")
    axes.legend()
    axes.grid(True, alpha=0.3)
    figure.tight_layout()
    figure.savefig(path, dpi=110)
    plt.close(figure)


def _dgemm(result, path):
    figures = result["figures"]
    orders = figures["orders"]
    figure, axes = plt.subplots(figsize=(7, 4.5))
    for name, label, style in (("kernel_only", "pymic kernel only", "o-"),
                               ("with_transfers", "pymic with transfers", "s-"),
                               ("numpy", "numpy.dot", "k--")):
        axes.plot(orders, [figures["results"][str(n)][name]["gflops"] for n in orders], style,
                  label=label)
    axes.set_xscale("log", base=2)
    axes.set_xticks(orders)
    axes.set_xticklabels([str(n) for n in orders])
    axes.set_xlabel("n (square matrices)")
    axes.set_ylabel("GFLOP/s")
    axes.set_ylim(bottom=0)
    axes.set_title("B6: dgemm through an offloaded cblas_dgemm kernel")
    axes.legend()
    axes.grid(True, alpha=0.3)
    figure.tight_layout()
    figure.savefig(path, dpi=110)
    plt.close(figure)


def _array_ops(result, path):
    seconds = result["figures"]["seconds"]
    dtypes = list(seconds)
    operations = list(seconds[dtypes[0]])
    width = 0.8 / len(dtypes)
    figure, axes = plt.subplots(figsize=(8, 4.5))
    for index, dtype in enumerate(dtypes):
        ratios = [seconds[dtype][op]["numpy"]["median"] / seconds[dtype][op]["pymic"]["median"]
                  for op in operations]
        axes.bar([position + (index - (len(dtypes) - 1) / 2) * width
                  for position in range(len(operations))], ratios, width, label=dtype)
    axes.axhline(1.0, color="black", linewidth=1, label="target, memory-bound ops (1.0×)")
    axes.axhline(1.5, color="black", linestyle="--", linewidth=1, label="target for ** (1.5×)")
    axes.set_xticks(range(len(operations)))
    axes.set_xticklabels(operations)
    axes.set_ylabel("speed-up over NumPy (NumPy time / pymic time)")
    axes.set_title(f"B5: OffloadArray ops on {result['figures']['elements']:,} device-resident "
                   "elements")
    axes.legend(fontsize=8)
    axes.grid(True, axis="y", alpha=0.3)
    figure.tight_layout()
    figure.savefig(path, dpi=110)
    plt.close(figure)


def _timeline(result, path):
    figures = result["figures"]
    spans = figures["spans"]
    end = max(span["end"] for trace in spans.values() for span in trace) * 1e3
    figure, panels = plt.subplots(2, 1, figsize=(10, 4.8), sharex=True)
    for axes, (mode, title) in zip(panels, (("one_stream", "one stream"),
                                            ("two_streams", "two streams"))):
        for span in spans[mode]:
            axes.broken_barh([(span["start"] * 1e3, (span["end"] - span["start"]) * 1e3)],
                             (span["stream"] - 0.4, 0.8), color=STAGE_COLOURS[span["stage"]],
                             edgecolor="white", linewidth=0.5)
        streams = sorted({span["stream"] for span in spans[mode]})
        axes.set_yticks(streams)
        axes.set_yticklabels([f"stream {index}" for index in streams])
        axes.set_ylim(-0.6, 1.6)
        finish = max(span["end"] for span in spans[mode]) * 1e3
        axes.set_title(f"{title}: last chunk done at {finish:.1f} ms", fontsize=10)
    panels[-1].set_xlim(0, end * 1.02)
    panels[-1].set_xlabel("time since the origin event (ms)")
    handles = [matplotlib.patches.Patch(color=colour, label=stage)
               for stage, colour in STAGE_COLOURS.items()]
    panels[0].legend(handles=handles, loc="upper right", ncol=3, fontsize=8)
    figure.suptitle(f"B7: {figures['chunks']} chunks of {figures['chunk_bytes'] // 2**20} MiB, "
                    f"h2d → kernel ({figures.get('rounds', 1)} polynomial passes) → d2h; "
                    f"speed-up {figures['speedup']:.2f}×")
    figure.tight_layout()
    figure.savefig(path, dpi=110)
    plt.close(figure)


def _mpi_device(result, path):
    """B13: latency and bandwidth by size, the MPI device beside the same MPI.

    Left, the median round trip of each contender, a bar per contender and
    transport (colour).  Then one panel of copies per transport: pymic's
    h2d and d2h, the same bytes as plain MPI between the same two
    processes (the target's peer, taking turns in the device's runs) and
    between two ranks of a job of their own (reported)."""
    figures = result["figures"]
    transports = [name for name in figures if isinstance(figures[name], dict)
                  and "device_copies_s" in figures[name]]
    figure, axes = plt.subplots(1, 1 + len(transports), figsize=(6 + 5 * len(transports), 5))
    left, panels = axes[0], axes[1:]
    colours = {"shared memory": "tab:blue", "tcp": "tab:orange"}
    contenders = ("pymic C", "MPI C, same processes", "MPI C", "MPI C multiple",
                  "MPI C exchange (polled)", "mpi4py", "pymic Python")
    width = 0.8 / max(1, len(transports))
    tallest = 0.0
    for t, name in enumerate(transports):
        f = figures[name]
        samples = {"pymic C": f["c_invoke_sync_s"],
                   "MPI C, same processes": f.get("c_round_trip_s"),
                   "MPI C": f["c_pingpong_s"],
                   "MPI C multiple": f.get("c_pingpong_multiple_s"),
                   "MPI C exchange (polled)": f.get("c_pingpong_polled_s"),
                   "mpi4py": f["mpi4py_pingpong_s"]}
        values = []
        for label in contenders:
            if label == "pymic Python":
                values.append(f["python_latency_us"]["median"])
            elif samples.get(label):
                ordered = sorted(samples[label])
                values.append(ordered[len(ordered) // 2] * 1e6)
            else:
                values.append(0.0)
        left.bar([i + (t - (len(transports) - 1) / 2) * width for i in range(len(contenders))],
                 values, width, color=colours.get(name, "gray"), label=name)
        tallest = max([tallest, *values])
    left.set_xticks(range(len(contenders)))
    left.set_xticklabels(contenders, rotation=35, ha="right", fontsize=8)
    left.set_yscale("log")
    left.set_ylim(top=tallest * 6)  # room for the legend above the bars
    left.set_ylabel("round trip (µs, log scale; median)")
    left.set_title("invoke + sync against MPI round trips")
    left.legend(fontsize=8, loc="upper left", ncol=2)
    for panel, name in zip(panels, transports):
        f = figures[name]
        colour = colours.get(name, "gray")
        sizes = sorted(int(size) for size in f["device_copies_s"])
        lines = (("device_copies_s", "-", 1.0, "pymic"),
                 ("send_recv_copies_s", "--", 0.8, "MPI, same processes"),
                 ("peer_copies_s", ":", 0.5, "MPI, a job of its own"))
        for key, line, alpha, who in lines:
            if key not in f:
                continue
            for direction, marker in (("h2d", "o"), ("d2h", "s")):
                rates = [size / f[key][str(size)][direction] / 1e9 for size in sizes]
                panel.plot(sizes, rates, marker + line, color=colour, alpha=alpha,
                           label=f"{who} {direction}")
        panel.set_xscale("log", base=2)
        panel.set_yscale("log")
        panel.set_xlabel("bytes")
        panel.set_ylabel("GB/s (10^9 bytes/s)")
        panel.set_title(f"copies over {name} against MPI Send/Recv")
        panel.legend(fontsize=7)
        panel.grid(True, alpha=0.3)
    figure.suptitle("B13: the MPI device against the same MPI")
    figure.tight_layout()
    figure.savefig(path, dpi=110)
    plt.close(figure)


_DRAWERS = (("B1", "latency.png", _latency),
            ("B3", "bandwidth.png", _bandwidth),
            ("B5", "array_ops.png", _array_ops),
            ("B6", "dgemm.png", _dgemm),
            ("B7", "pipeline_timeline.png", _timeline),
            ("B13", "mpi_device.png", _mpi_device))


def draw_all(run, directory):
    """Draw every plot whose benchmark produced figures in this run.

    Parameters
    ----------
    run : dict
        The whole run (``benchmarks`` maps ids to results).
    directory : pathlib.Path
        Where the PNG files go.

    Returns
    -------
    list of str
        File names drawn.  A plot whose benchmark failed is skipped, and a
        stale PNG of that name from an earlier run is removed so the page
        never shows figures from another run.
    """
    drawn = []
    for bench, name, draw in _DRAWERS:
        path = pathlib.Path(directory) / name
        result = run["benchmarks"].get(bench)
        if result is None or "error" in result:
            path.unlink(missing_ok=True)
            continue
        draw(result, path)
        drawn.append(name)
    return drawn
