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
