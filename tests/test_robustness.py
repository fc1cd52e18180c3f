"""Bad inputs, bad files and folders, and interrupted runs, tried as a careless user would: each
is refused with an error that names what is wrong, before any work is spent, or gives the right
result. Nothing is lost and nothing is silent."""

from __future__ import annotations

import os

import numpy as np
import pytest

from kdlib import profiles, quant, results, runner

rng = np.random.default_rng(37)


# --------------------------------------------------------------------------- numbers


@pytest.mark.parametrize("bad", [np.nan, np.inf, -np.inf])
def test_quantize_weights_refuses_a_kernel_with_nan_or_inf(bad):
    w = rng.normal(size=(4, 3)).astype(np.float32)
    w[1, 2] = bad
    with pytest.raises(ValueError, match="kernel contains NaN or infinite"):
        quant.quantize_weights(w, 4)


def test_mean_std_refuses_nan_as_compare_does():
    with pytest.raises(ValueError, match="finite"):
        results.compare([0.9, np.nan], [0.8, 0.85])
    with pytest.raises(ValueError, match=r"mean_std needs finite values, got \[0.9, nan\]"):
        results.mean_std([0.9, np.nan])
    with pytest.raises(ValueError, match="finite"):
        results.mean_std([np.inf])


# --------------------------------------------------------------------------- files and folders


def test_loading_records_from_a_folder_that_is_not_there_is_an_error(tmp_path):
    with pytest.raises(FileNotFoundError, match="no such folder"):
        results.load(tmp_path / "no" / "such" / "folder")
    (tmp_path / "a.json").write_text("{}")
    with pytest.raises(FileNotFoundError, match="a file, not a folder"):
        results.load(tmp_path / "a.json")
    (tmp_path / "empty").mkdir()
    assert results.load(tmp_path / "empty") == []  # a folder without records: no records


# --------------------------------------------------------------------------- the runner


def _no_runs(monkeypatch):
    """The runner's checks must refuse before any notebook runs: running one is a failure."""

    def run_one(*args, **kwargs):
        raise AssertionError("a notebook ran although the call should have been refused")

    monkeypatch.setattr(runner, "run_one", run_one)


def test_only_selects_by_number_or_whole_name_and_refuses_what_matches_nothing(monkeypatch, capsys):
    assert [nb.name[:2] for nb in runner.notebooks("1")] == ["01"]  # not 03 or 04 ("cifar10")
    assert [nb.name[:2] for nb in runner.notebooks("00,1")] == ["00", "01"]
    whole = runner.notebooks("02_densenet_teacher_student_mnist")
    assert [nb.name[:2] for nb in whole] == ["02"]
    assert runner.notebooks("02_densenet_teacher_student_mnist.ipynb") == whole
    for bad in ("00,nope", "cifar10", "densenet", "99", ","):
        with pytest.raises(ValueError, match="valid: 00 "):
            runner.notebooks(bad)
    _no_runs(monkeypatch)
    with pytest.raises(SystemExit):
        runner.main(["--profile", "smoke", "--only", "00,nope"])
    assert "'nope'" in capsys.readouterr().err


@pytest.mark.parametrize("out", ["results", "results/full", "notebooks", "kdlib", ".", "tests/x"])
def test_out_is_never_a_committed_folder(out, monkeypatch, capsys):
    _no_runs(monkeypatch)
    monkeypatch.chdir(results.REPO)
    with pytest.raises(SystemExit):
        runner.main(["--profile", "smoke", "--out", out, "--only", "00"])
    assert "among the checkout's committed files" in capsys.readouterr().err
    sneaky = results.REPO / "runs" / ".." / "results"  # resolved, not compared as text
    with pytest.raises(ValueError, match="committed files"):
        runner._check_out(sneaky)


def test_out_that_cannot_be_written_is_refused_before_any_run(tmp_path, monkeypatch, capsys):
    _no_runs(monkeypatch)
    blocker = tmp_path / "a-file"
    blocker.write_text("")
    with pytest.raises(SystemExit):
        runner.main(["--profile", "smoke", "--out", str(blocker / "runs"), "--only", "00"])
    assert "cannot write to" in capsys.readouterr().err


def test_commit_refuses_a_dirty_tree_unless_a_reason_is_given(tmp_path, monkeypatch, capsys):
    _no_runs(monkeypatch)
    monkeypatch.setattr(results, "git_commit", lambda: {"commit": "aaa1111", "dirty": True})
    with pytest.raises(SystemExit):
        runner.main(["--profile", "cpu", "--commit", "--only", "00"])
    assert "uncommitted changes" in capsys.readouterr().err
    with pytest.raises(SystemExit):  # a reason only makes sense for committed runs
        runner.main(["--profile", "smoke", "--allow-dirty", "testing", "--only", "00"])
    seen = {}

    def run_one(nb, profile, **kwargs):
        seen["reason"] = os.environ.get("KDLIB_DIRTY_REASON")
        return "stopped by the test"

    monkeypatch.setattr(runner, "run_one", run_one)
    monkeypatch.setattr(results, "committed_dir", lambda profile: tmp_path / "records")
    argv = ["--profile", "cpu", "--commit", "--allow-dirty", "profile edit under test"]
    assert runner.main([*argv, "--only", "00", "--out", str(tmp_path / "runs")]) == 1
    assert seen["reason"] == "profile edit under test"
    assert "KDLIB_DIRTY_REASON" not in os.environ  # the caller's environment is left alone
    monkeypatch.setenv("KDLIB_DIRTY_REASON", "profile edit under test")
    record = results.Run("00_soft_targets_temperature", {"profile": "cpu"}).record()
    assert record["git_dirty_reason"] == "profile edit under test"


def test_the_runner_banner_states_the_settings_the_notebook_runs_with(
    tmp_path, monkeypatch, capsys
):
    monkeypatch.setattr(runner, "run_one", lambda *a, **k: "stopped by the test")
    assert runner.main(["--profile", "smoke", "--only", "0", "--out", str(tmp_path)]) == 1
    shown = capsys.readouterr().out
    cfg = profiles.get("00_soft_targets_temperature", "smoke")
    assert f"settings: {cfg!r}" in shown and f"epochs={cfg.epochs}" in shown
