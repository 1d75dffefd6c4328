"""Tests of benchmarks/readme_figures.py: the README's speed block follows
the results it is generated from, and the markers are required."""

import copy
import json
import pathlib
import sys

import pytest

HERE = pathlib.Path(__file__).resolve().parents[1]
sys.path.insert(0, str(HERE))

import readme_figures  # noqa: E402

RUN = json.loads((HERE / "results" / "latest.json").read_text(encoding="utf-8"))


def readme_with(body):
    return f"# title\n\n## Speed\n\n{readme_figures.BEGIN}\n{body}{readme_figures.END}\n\n## Next\n"


def test_block_follows_the_results():
    changed = copy.deepcopy(RUN)
    changed["benchmarks"]["B11"]["figures"]["latency_us"]["proc"]["median"] = 7.25
    before, after = readme_figures.block(RUN), readme_figures.block(changed)
    assert "invoke + sync 7.2 µs" in after
    assert before != after


def test_process_device_line_compares_with_mpi_when_measured():
    changed = copy.deepcopy(RUN)
    b11 = changed["benchmarks"]["B11"]["figures"]
    b11["c_round_trip_us"] = {"proc": {"median": 0.9}, "mpi": {"median": 0.6},
                              "shm": {"median": 0.1}}
    text = " ".join(readme_figures.block(changed).split())
    assert "from C 0.90 µs, 1.50× an Open MPI round trip" in text
    del b11["c_round_trip_us"]
    assert "Open MPI" not in " ".join(readme_figures.block(changed).split())


def test_benchmarks_that_did_not_run_say_why():
    changed = copy.deepcopy(RUN)
    changed["benchmarks"]["B12"] = {"figures": {"unavailable": "mpirun is not on PATH"},
                                    "targets": []}
    del changed["benchmarks"]["B5"]
    changed["benchmarks"]["B6"] = {"error": "crashed", "targets": []}
    text = " ".join(readme_figures.block(changed).split())
    assert "B12 did not run: mpirun is not on PATH" in text
    assert "B5 was not part of this run" in text
    assert "B6 failed in this run" in text


def test_rewrite_replaces_only_the_block():
    old = readme_with("old figures\n")
    new = readme_figures.rewrite(old, "new figures\n")
    assert new == readme_with("new figures\n")
    assert readme_figures.rewrite(new, "new figures\n") == new


@pytest.mark.parametrize("text", [
    "# no markers\n",
    f"{readme_figures.END}\n{readme_figures.BEGIN}\n",
    f"{readme_figures.BEGIN}\n{readme_figures.BEGIN}\n{readme_figures.END}\n",
])
def test_rewrite_needs_both_markers_in_order(text):
    with pytest.raises(readme_figures.MarkerError):
        readme_figures.rewrite(text, "figures\n")


def test_check_and_write_from_the_command_line(tmp_path, capsys):
    readme = tmp_path / "README.md"
    readme.write_text(readme_with("stale\n"), encoding="utf-8")
    arguments = ["--readme", str(readme), "--results", str(HERE / "results" / "latest.json")]
    assert readme_figures.main(["--check", *arguments]) == 1
    assert "differ" in capsys.readouterr().err
    assert readme_figures.main(arguments) == 0
    assert readme_figures.main(["--check", *arguments]) == 0
    assert readme_figures.block(RUN) in readme.read_text(encoding="utf-8")
