"""Write a run's results: latest.json and the Markdown page README.md."""

import json
import pathlib

# Above this many cores used by other processes the page warns that the run
# was noisy (0.1 core on average already skews microsecond figures).
BUSY_WARNING_CORES = 0.1

PLOTS = [
    ("latency.png", "B1 latency of an empty offload, every peer"),
    ("bandwidth.png", "B3 transfer bandwidth against size, beside numpy.copyto"),
    ("array_ops.png", "B5 OffloadArray operations: speed-up over NumPy"),
    ("dgemm.png", "B6 dgemm GFLOP/s against n, beside numpy.dot"),
    ("pipeline_timeline.png", "B7 one stream against two streams, chunk stages on a time axis"),
]


def _cell(text):
    return str(text).replace("|", "\\|").replace("\n", " ")


def _table(columns, rows):
    lines = ["| " + " | ".join(_cell(column) for column in columns) + " |",
             "|" + "---|" * len(columns)]
    lines += ["| " + " | ".join(_cell(value) for value in row) + " |" for row in rows]
    return lines


def _machine_lines(facts, run):
    packages = facts["packages"]
    lines = [
        f"- Date (UTC): {facts['date_utc']}",
        f"- CPU: {facts['cpu_model']}, {facts['cpus_usable']} usable of "
        f"{facts['logical_cpus']} logical CPUs"
        + (", virtual machine" if facts.get("virtual_machine") else ""),
        f"- Memory: {facts['memory_gib']} GiB; OS: {facts['os']}",
        f"- Python {facts['python']}; compiler: {facts['compiler']}",
        "- Packages: " + ", ".join(f"{name} {version}" for name, version in packages.items()
                                   if version),
        f"- Load average at start {facts['load_average_start']}, "
        f"at end {facts.get('load_average_end')} (a busy machine makes every ratio noisier)",
    ]
    blas = run["benchmarks"].get("B6", {}).get("figures", {}).get("blas")
    if blas:
        lines.append("- BLAS (threadpoolctl): " + "; ".join(
            f"{entry['filepath'].rsplit('/', 1)[-1]} {entry['version']} core "
            f"{entry['architecture']}, {entry['num_threads']} threads" for entry in blas))
    if facts["unset_for_benchmarks"]:
        lines.append("- Removed from the environment for the run: "
                     + ", ".join(f"{k}={v}" for k, v in facts["unset_for_benchmarks"].items()))
    if facts["environment"]:
        lines.append("- Environment: " + ", ".join(
            f"{k}={v}" for k, v in sorted(facts["environment"].items())))
    return lines


def markdown(run, plots_present):
    """Render the results page.

    Parameters
    ----------
    run : dict
        The whole run: ``facts``, ``quick``, ``partial``, ``benchmarks``.
    plots_present : list of str
        PNG file names that exist beside the page.

    Returns
    -------
    str
        Markdown text.
    """
    lines = ["# pymic benchmark results", ""]
    if run["partial"]:
        lines += ["**Partial or quick run: not the committed results.**", ""]
    lines += ["Every ratio compares pymic with a peer measured in the same run, the two "
              "interleaved in short blocks so drift hits both; each figure is a median. "
              "`make bench` regenerates this page (see ../README.md).", "",
              "## Machine", ""]
    lines += _machine_lines(run["facts"], run)
    others = run["facts"].get("other_processes_cores")
    if others is not None:
        lines.append(f"- Other processes kept {others} of {run['facts']['cpus_usable']} cores "
                     "busy on average during the run")
    if others is not None and others > BUSY_WARNING_CORES:
        lines[2:2] = [f"**Warning: the machine was busy (other processes used {others} cores "
                      "on average), so these figures are noisy; spinning hand-offs and OpenMP "
                      "teams suffer most. Re-run `make bench` on a quiet machine.**", ""]
    lines += ["", "## Targets", ""]
    rows = []
    for bench, result in run["benchmarks"].items():
        for row in result["targets"]:
            others = result.get("other_processes_cores")
            rows.append([bench, row["goal"], row["pymic"], row["peer"], row["value_text"],
                         f"**{row['status']}**", "—" if others is None else f"{others}",
                         row["note"]])
    lines += _table(["#", "target", "pymic", "peer", "judged figure", "verdict",
                     "cores busy elsewhere", "note"], rows)
    lines += [""]
    for bench, result in run["benchmarks"].items():
        lines += [f"## {bench}: {result['name']}", ""]
        if "error" in result:
            lines += [f"Did not complete: {result['error']}", ""]
            continue
        if result.get("seconds") is not None:
            others = result.get("other_processes_cores")
            waited = result.get("waited_for_quiet_seconds") or 0
            lines += [f"Ran for {result['seconds']} s"
                      + (f"; other processes kept {others} cores busy on average meanwhile"
                         if others is not None else "")
                      + (f" (after waiting {waited:.0f} s for a quieter machine)"
                         if waited >= 1.5 else "") + ".", ""]
        for table in result.get("tables", []):
            lines += [f"**{table['title']}**", ""]
            lines += _table(table["columns"], table["rows"]) + [""]
        for note in result.get("notes", []):
            lines += [f"- {note}"]
        if result.get("notes"):
            lines += [""]
    shown = [(name, caption) for name, caption in PLOTS if name in plots_present]
    if shown:
        lines += ["## Plots", ""]
        for name, caption in shown:
            lines += [f"### {caption}", "", f"![{caption}]({name})", ""]
    return "\n".join(lines) + "\n"


def write(run, directory, plots_present):
    """Write ``latest.json`` and ``README.md`` into `directory`.

    Parameters
    ----------
    run : dict
        The whole run (see :func:`markdown`).
    directory : pathlib.Path
        Output directory; it exists.
    plots_present : list of str
        PNG file names the page may show (those drawn by this run).
    """
    directory = pathlib.Path(directory)
    with open(directory / "latest.json", "w", encoding="utf-8") as output:
        json.dump(run, output, indent=1, default=float)
        output.write("\n")
    (directory / "README.md").write_text(markdown(run, plots_present), encoding="utf-8")
