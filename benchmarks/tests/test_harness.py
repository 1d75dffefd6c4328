"""Tests of the harness's own logic (no pymic needed): statistics,
interleaving, verdicts, the B7 overlap measure and the report page."""

import pathlib
import sys

import pytest

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parents[1]))

import report  # noqa: E402
import targets  # noqa: E402
from b7_pipeline import overlap_seconds  # noqa: E402
from timing import interleave, percentile, summarize  # noqa: E402


def test_percentile_and_summary_of_known_samples():
    samples = list(range(1, 102))  # 1..101
    assert percentile(samples, 0.5) == 51
    assert percentile(samples, 0.1) == 11
    assert percentile(samples, 0.9) == 91
    stats = summarize(samples, scale=2.0)
    assert stats == {"median": 102.0, "p10": 22.0, "p90": 182.0, "min": 2.0, "n": 101}


def test_interleave_alternates_order_between_rounds():
    calls = []
    contenders = {name: (lambda name=name: calls.append(name) or [len(calls)])
                  for name in ("a", "b", "c")}
    samples = interleave(contenders, rounds=3)
    assert calls == ["a", "b", "c", "c", "b", "a", "a", "b", "c"]
    assert samples == {"a": [1, 6, 7], "b": [2, 5, 8], "c": [3, 4, 9]}


@pytest.mark.parametrize("value, comparison, threshold, status", [
    (20.0, ">=", 20.0, targets.PASS), (19.9, ">=", 20.0, targets.MISS),
    (10.0, "<=", 10.0, targets.PASS), (10.1, "<=", 10.0, targets.MISS),
    (0.99, "<", 1.0, targets.PASS), (1.0, "<", 1.0, targets.MISS),
    (None, ">=", 1.0, targets.NOT_AVAILABLE),
])
def test_verdicts(value, comparison, threshold, status):
    row = targets.check("B0", "goal", "p", "q", value, comparison, threshold)
    assert row["status"] == status


def test_overlap_counts_only_time_both_streams_were_busy():
    spans = [
        {"stream": 0, "start": 0.0, "end": 1.0}, {"stream": 0, "start": 1.0, "end": 2.0},
        {"stream": 1, "start": 1.5, "end": 3.0}, {"stream": 1, "start": 0.2, "end": 0.4},
    ]
    assert overlap_seconds(spans) == pytest.approx(0.7)
    assert overlap_seconds([s for s in spans if s["stream"] == 0]) == 0.0


def _run(status_value):
    facts = {"date_utc": "2026-01-01T00:00:00+00:00", "cpu_model": "CPU", "logical_cpus": 2,
             "cpus_usable": 2, "virtual_machine": True, "memory_gib": 1.0, "os": "Linux",
             "python": "3.11", "compiler": "cc", "packages": {"numpy": "2"},
             "environment": {}, "unset_for_benchmarks": {}, "load_average_start": [0, 0, 0],
             "load_average_end": [0, 0, 0], "other_processes_cores": 0.5}
    row = targets.check("B1", "a | goal", "1 µs", "2 µs", status_value, ">=", 2.0)
    return {"facts": facts, "quick": False, "partial": False,
            "benchmarks": {"B1": {"name": "latency", "targets": [row], "seconds": 1.0,
                                  "tables": [{"title": "t", "columns": ["x"], "rows": [[1]]}]},
                           "B2": {"name": "broken", "error": "boom",
                                  "targets": [targets.failed("B2", "broken", "boom")]}}}


def test_page_has_verdicts_errors_warning_and_only_drawn_plots():
    page = report.markdown(_run(1.5), ["latency.png"])
    assert "| B1 | a \\| goal | 1 µs | 2 µs | 1.50× | **MISS** | — |" in page
    assert "**ERROR**" in page and "Did not complete: boom" in page
    assert "Warning: the machine was busy" in page
    assert "latency.png" in page and "bandwidth.png" not in page
    assert "**PASS**" in report.markdown(_run(2.5), [])


# ----------------------------------------------- B5 numexpr, B9, B10 verdicts

def _summary(median):
    return {"median": median, "p10": median, "p90": median, "min": median, "n": 1}


def test_step_rows_judge_pymic_against_ctypes_per_pattern():
    from app_loop import step_rows

    summaries = {"ctypes": _summary(100.0), "pymic_each": _summary(110.0),
                 "pymic_once": _summary(101.0)}
    each, once = step_rows("B9", "n = 1", summaries, 1.1, 1.0)
    assert each["status"] == targets.PASS and each["value"] == pytest.approx(1.1)
    assert once["status"] == targets.MISS and once["value"] == pytest.approx(1.01)
    assert "sync after each kernel" in each["goal"] and "one sync per step" in once["goal"]
    # B10 judges only the per-kernel pattern.
    (row,) = step_rows("B10", "n = 1", {"ctypes": _summary(100.0),
                                        "pymic_each": _summary(129.0)}, 1.3, None)
    assert row["status"] == targets.PASS and row["bench"] == "B10"


def test_latency_under_load_must_not_exceed_the_thread_pool():
    from b10_under_load import latency_row

    row = latency_row({"pymic": _summary(36.0), "threadpool": _summary(36.0)})
    assert row["status"] == targets.PASS
    row = latency_row({"pymic": _summary(91.0), "threadpool": _summary(36.0)})
    assert row["status"] == targets.MISS and row["value"] == pytest.approx(91 / 36)


def test_numexpr_rows_show_the_worst_dtype_and_skip_ops_without_numexpr():
    from b5_array_ops import numexpr_rows

    def op(pymic, numexpr=None):
        stats = {"pymic": _summary(pymic), "numpy": _summary(1.0)}
        if numexpr is not None:
            stats["numexpr"] = _summary(numexpr)
        return stats

    results = {"float64": {"add": op(1.0, 1.2), "pow": op(2.0, 1.0), "fill": op(1.0)},
               "float32": {"add": op(1.0, 0.9), "pow": op(1.0, 1.5), "fill": op(1.0)}}
    rows = {row["goal"].split()[0]: row for row in numexpr_rows(results)}
    assert set(rows) == {"add", "pow"}  # fill has no numexpr peer
    assert rows["add"]["status"] == targets.MISS and "float32" in rows["add"]["pymic"]
    assert rows["add"]["value"] == pytest.approx(0.9)
    assert rows["pow"]["status"] == targets.MISS and rows["pow"]["value"] == pytest.approx(0.5)
    assert numexpr_rows({"float64": {"add": op(1.0)}}) == []


def test_background_load_processes_run_inside_the_block_and_are_reaped():
    from b10_under_load import background_load

    with background_load(2) as processes:
        assert len(processes) == 2 and all(p.poll() is None for p in processes)
    assert all(p.poll() is not None for p in processes)


def _b11_inputs(mpi):
    latency = {"proc": _summary(1.0), "host": _summary(0.3)}
    c_figures = {"proc": _summary(0.45), "shm": _summary(0.1), "mpi_missing": None}
    if mpi is None:
        c_figures["mpi_missing"] = "no mpicc"
    else:
        c_figures["mpi"] = _summary(mpi)
    under_load = {"quiet": {"proc": _summary(1.0), "ctypes": _summary(0.1)},
                  "loaded": {"proc": _summary(1.4), "ctypes": _summary(0.1)}}
    return latency, c_figures, under_load


def test_b11_round_trips_are_judged_against_mpi_and_the_quiet_ratio():
    from b11_proc import _latency_rows

    c_row, python_row, load_row = _latency_rows(*_b11_inputs(mpi=0.4))
    assert c_row["value"] == pytest.approx(0.45 / 0.4) and c_row["status"] == targets.PASS
    assert python_row["value"] == pytest.approx(1.0 / (0.3 + 0.4))
    assert python_row["status"] == targets.PASS
    assert load_row["value"] == pytest.approx(1.4) and load_row["status"] == targets.MISS
    c_row, python_row, _ = _latency_rows(*_b11_inputs(mpi=0.2))
    assert c_row["status"] == targets.MISS and python_row["status"] == targets.MISS


def test_b11_without_mpi_says_why():
    from b11_proc import _latency_rows

    c_row, python_row, load_row = _latency_rows(*_b11_inputs(mpi=None))
    for row in (c_row, python_row):
        assert row["status"] == targets.NOT_AVAILABLE and "no mpicc" in row["note"]
    assert load_row["status"] in (targets.PASS, targets.MISS)


def _b13_figures(c_us, round_trip_us, ping_us=0.3, multiple_us=0.4, polled_us=0.5):
    seconds = {"c_invoke_sync_s": [c_us * 1e-6] * 3,
               "c_round_trip_s": [round_trip_us * 1e-6] * 3,
               "c_pingpong_s": [ping_us * 1e-6] * 3,
               "c_pingpong_multiple_s": [multiple_us * 1e-6] * 3,
               "c_pingpong_polled_s": [polled_us * 1e-6] * 3,
               "c_invoke_sync_spawned_s": [15e-6] * 3, "c_round_trip_spawned_s": [12e-6] * 3,
               "mpi4py_pingpong_s": [2e-6] * 3}
    mib = str(1 << 20)
    copies = {mib: {"h2d": 1e-3, "d2h": 2e-3}}
    # Three runs of the same-processes peer: h2d ratios 0.5, 2.0 and 0.95
    # to the device's (median 0.95), d2h 0.5 each time.
    same_runs = [{mib: {"h2d": h2d, "d2h": 1e-3}} for h2d in (0.5e-3, 2e-3, 0.95e-3)]
    return {**seconds, "python_latency_us": _summary(4.0), "device_copies_s": copies,
            "device_copies_runs_s": [copies] * 3,
            "peer_copies_s": {mib: {"h2d": 1e-3, "d2h": 1e-3}},
            "send_recv_copies_s": {mib: {"h2d": 0.9e-3, "d2h": 1e-3}},
            "send_recv_copies_runs_s": same_runs,
            "dgemm": {"order": 64, "mpi": 1.0, "numpy": 2.0}}


def test_b13_copies_keep_each_sizes_median_time_of_the_runs():
    from b13_mpi_device import median_of

    runs = [{"1024": {"h2d": 3.0, "d2h": 1.0}, "2048": {"h2d": 5.0, "d2h": 6.0}},
            {"1024": {"h2d": 2.0, "d2h": 4.0}, "2048": {"h2d": 7.0, "d2h": 5.5}},
            {"1024": {"h2d": 0.1, "d2h": 9.0}, "2048": {"h2d": 6.0, "d2h": 5.0}}]
    # One lucky (or unlucky) run does not decide: the middle one does.
    assert median_of(runs) == {"1024": {"h2d": 2.0, "d2h": 4.0},
                               "2048": {"h2d": 6.0, "d2h": 5.5}}
    assert median_of(runs[:1]) == runs[0]


def test_b13_device_and_peer_copies_take_turns(monkeypatch):
    import b13_mpi_device
    from context import Context

    order = []

    def run_of(name, seconds):
        def run():
            order.append(name)
            return {"1024": {"h2d": seconds.pop(0), "d2h": 1.0}}
        return run

    def device_run_of(device, send_recv):
        return lambda: {"device": device(), "send_recv": send_recv()}

    monkeypatch.setattr(b13_mpi_device, "BANDWIDTH_ROUNDS", 3)
    copies = b13_mpi_device._copies(Context(quick=False, kernel_dir=None),
                                    device_run_of(run_of("device", [3.0, 1.0, 2.0]),
                                                  run_of("same", [6.0, 5.0, 0.1])),
                                    run_of("peer", [0.5, 4.0, 4.0]))
    assert order == ["device", "same", "peer", "peer", "device", "same", "device", "same",
                     "peer"]
    assert copies["device_copies_s"]["1024"]["h2d"] == 2.0
    assert copies["send_recv_copies_s"]["1024"]["h2d"] == 5.0
    assert copies["peer_copies_s"]["1024"]["h2d"] == 4.0
    assert [run["1024"]["h2d"] for run in copies["peer_copies_runs_s"]] == [0.5, 4.0, 4.0]
    assert [run["1024"]["h2d"] for run in copies["send_recv_copies_runs_s"]] == [6.0, 5.0, 0.1]


def test_b13_judges_the_round_trip_of_the_same_processes_and_reports_the_others():
    from b13_mpi_device import judge

    result = judge({"shared memory": _b13_figures(c_us=0.6, round_trip_us=0.375)})
    rows = result["targets"]
    target, plain, multiple, polled, spawned, python = rows[:6]
    assert target["status"] == targets.MISS and target["value"] == pytest.approx(1.6)
    assert "round trip 0.38 µs" in target["peer"] and "same two processes" in target["goal"]
    assert plain["status"] == targets.REPORTED and plain["value_text"] == "2.00×"
    assert "MPI_Init" in plain["goal"] and "ping-pong 0.30 µs" in plain["peer"]
    assert multiple["status"] == targets.REPORTED and multiple["value_text"] == "1.50×"
    assert "MPI_THREAD_MULTIPLE" in multiple["goal"] and "0.40 µs" in multiple["peer"]
    assert polled["status"] == targets.REPORTED and polled["value_text"] == "1.20×"
    assert "exchange 0.50 µs (1.67× the plain ping-pong)" in polled["peer"]
    assert spawned["status"] == targets.REPORTED and "spawned" in spawned["goal"]
    assert "15.00 µs" in spawned["pymic"] and spawned["value_text"] == "1.25×"
    assert python["status"] == targets.REPORTED and "mpi4py" in python["goal"]
    # The copies' target: against plain MPI between the same processes,
    # each size's ratio the median of the runs' ratios (not the ratio of
    # the medians).
    copies = {row["goal"].split(":")[1].split()[0]: row for row in rows[6:8]}
    assert all("same two processes" in row["goal"] for row in copies.values())
    assert copies["h2d"]["status"] == targets.PASS
    assert copies["h2d"]["value"] == pytest.approx(0.95)
    assert copies["d2h"]["status"] == targets.MISS
    assert copies["d2h"]["value"] == pytest.approx(0.5)
    # Beside them, reported: against two ranks of a job of their own.
    separate = {row["goal"].split(":")[1].split()[0]: row for row in rows[8:10]}
    assert all(row["status"] == targets.REPORTED and "job of their own" in row["goal"]
               for row in separate.values())
    assert separate["h2d"]["value_text"] == "1.00×" and separate["d2h"]["value_text"] == "0.50×"
    assert result["tables"][0]["rows"][0][-2:] == ["1.17", "1.05"]
    passing = judge({"tcp": _b13_figures(c_us=0.45, round_trip_us=0.35)})
    assert passing["targets"][0]["status"] == targets.PASS
