"""Draw a pymic trace file as a timeline PNG (the picture in docs/tools.md).

    python docs/images/plot_trace.py [TRACE_JSON] [OUTPUT_PNG]

Without a trace file it runs examples/compile_and_trace to make one.  Needs
matplotlib (benchmarks/requirements.txt); the test suite does not.
"""

import json
import os
import subprocess
import sys
import tempfile

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
from matplotlib.patches import Patch  # noqa: E402

HERE = os.path.dirname(os.path.abspath(__file__))
REPOSITORY = os.path.dirname(os.path.dirname(HERE))
COLOURS = {"stage_sqrt": "#4c72b0", "stage_affine": "#dd8452", "h2d": "#55a868",
           "d2h": "#c44e52", "wait": "#b0b0b0"}


def make_trace(path):
    example = os.path.join(REPOSITORY, "examples", "compile_and_trace")
    subprocess.run([sys.executable, "compile_and_trace.py", path], cwd=example, check=True)


def load(path):
    with open(path) as stream:
        events = json.load(stream)["traceEvents"]
    names = {(e["pid"], e["tid"]): e["args"]["name"] for e in events
             if e["ph"] == "M" and e["name"] == "thread_name"}
    processes = {e["pid"]: e["args"]["name"] for e in events
                 if e["ph"] == "M" and e["name"] == "process_name"}
    return events, names, processes


def plot(path, output):
    events, names, processes = load(path)
    slices = [e for e in events if e["ph"] == "X"]
    tracks = sorted({(e["pid"], e["tid"]) for e in slices}, key=lambda t: (-t[0], -t[1]))
    fig, ax = plt.subplots(figsize=(11, 1.0 + 0.7 * len(tracks)))
    for row, track in enumerate(tracks):
        for e in slices:
            if (e["pid"], e["tid"]) != track:
                continue
            key = "wait" if e.get("cat") == "wait" else e["name"]
            ax.broken_barh([(e["ts"] / 1000, max(e["dur"], 1) / 1000)], (row - 0.35, 0.7),
                           facecolors=COLOURS.get(key, "#8172b3"), edgecolor="white",
                           linewidth=0.3)
    labels = [f"{processes.get(pid, pid).split(' (')[0]}: {names.get((pid, tid), tid)}"
              for pid, tid in tracks]
    ax.set_yticks(range(len(tracks)), labels)
    ax.set_xlabel("time since the trace started (ms)")
    ax.set_title("pymic trace of examples/compile_and_trace: two streams side by side")
    ax.legend(handles=[Patch(color=c, label=n if n != "wait" else "host waiting (sync)")
                       for n, c in COLOURS.items()], loc="upper center",
              bbox_to_anchor=(0.5, -0.35), ncol=5, frameon=False)
    ax.grid(axis="x", alpha=0.3)
    fig.tight_layout()
    fig.savefig(output, dpi=110)
    print(f"wrote {output}")


def main():
    trace = sys.argv[1] if len(sys.argv) > 1 else None
    output = sys.argv[2] if len(sys.argv) > 2 else os.path.join(HERE, "trace_timeline.png")
    if trace is None:
        trace = os.path.join(tempfile.mkdtemp(), "trace.json")
        make_trace(trace)
    plot(trace, output)


if __name__ == "__main__":
    main()
