"""Bad inputs, bad files and folders, and interrupted runs, tried as a careless user would: each
is refused with an error that names what is wrong, before any work is spent, or gives the right
result. Nothing is lost and nothing is silent."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest

from kdlib import cache, profiles, quant, results, runner

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


# --------------------------------------------------------------------------- writes checked first


def test_a_run_checks_its_records_folder_when_it_is_created(tmp_path, monkeypatch):
    afile = tmp_path / "a-file"
    afile.write_text("")
    monkeypatch.setenv("KDLIB_RESULTS_DIR", str(afile))
    with pytest.raises(PermissionError, match=f"cannot write to {afile}.*KDLIB_RESULTS_DIR"):
        results.Run("00_soft_targets_temperature", {"profile": "smoke"})


def test_a_run_checks_a_read_only_records_folder_when_it_is_created(tmp_path, monkeypatch):
    locked = tmp_path / "locked"
    locked.mkdir()
    locked.chmod(0o500)
    try:
        if os.access(locked, os.W_OK):
            pytest.skip("running as a user who can write anywhere (root)")
        monkeypatch.setenv("KDLIB_RESULTS_DIR", str(locked))
        with pytest.raises(PermissionError, match=f"cannot write to {locked}"):
            results.Run("00_soft_targets_temperature", {"profile": "smoke"})
    finally:
        locked.chmod(0o700)


@pytest.mark.parametrize(
    "value,kind",
    [(Path("runs"), "PosixPath"), ({1, 2}, "set"), ([0.1, {"x": object()}], "object")],
)
def test_run_log_refuses_what_a_record_cannot_hold_naming_the_key(value, kind):
    run = results.Run("00_soft_targets_temperature", {"profile": "smoke"})
    with pytest.raises(TypeError, match=rf"Run.log\(where=...\).* is a .*{kind}"):
        run.log(where=value)
    assert "where" not in run.metrics


def test_run_log_refuses_a_tensor_and_converts_numpy_values():
    import keras

    run = results.Run("00_soft_targets_temperature", {"profile": "smoke"})
    with pytest.raises(TypeError, match=r"Run.log\(acc=...\)\[1\]"):
        run.log(acc=[0.5, keras.ops.convert_to_tensor(0.9)])
    run.log(acc=np.float32(0.5), errors=np.int64(3), curve=np.array([0.25, np.nan]))
    assert run.metrics == {"acc": 0.5, "errors": 3, "curve": [0.25, None]}
    assert type(run.metrics["acc"]) is float and type(run.metrics["errors"]) is int
    with pytest.raises(ValueError, match="recorded by Run.compare"):
        run.log(comparisons={})


def _tiny(lambda_layer=False):
    import keras

    inputs = keras.Input((3,))
    x = keras.layers.Lambda(lambda v: v * 2.0)(inputs) if lambda_layer else inputs
    model = keras.Model(inputs, keras.layers.Dense(2)(x))
    model.compile("adam", "mse")
    return model


def _train(model):
    model.fit(np.zeros((4, 3)), np.zeros((4, 2)), verbose=0)
    return {"loss": np.float32(0.25), "epochs": np.int64(1)}


def test_a_cache_entry_that_is_a_folder_is_refused_before_training(tmp_path, monkeypatch):
    monkeypatch.setenv("KDLIB_CACHE_DIR", str(tmp_path))
    cache.entry("tiny", {}, "d").mkdir(parents=True)

    def train(model):
        raise AssertionError("trained although the entry could not be written")

    with pytest.raises(IsADirectoryError, match="is a folder, not a file"):
        cache.train_or_load("tiny", _tiny, train, config={}, data="d")
    blocker = tmp_path / "blocker"
    blocker.write_text("")
    monkeypatch.setenv("KDLIB_CACHE_DIR", str(blocker / "cache"))
    with pytest.raises(PermissionError, match=f"cannot write to {blocker / 'cache'}"):
        cache.train_or_load("tiny", _tiny, train, config={}, data="d")


def test_numpy_metrics_are_cached_as_numbers_and_the_second_call_loads(tmp_path, monkeypatch):
    monkeypatch.setenv("KDLIB_CACHE_DIR", str(tmp_path))
    _, info = cache.train_or_load("tiny", _tiny, _train, config={}, data="d")
    assert info["loss"] == 0.25 and info["cached"] is False and type(info["epochs"]) is int

    def train(model):
        raise AssertionError("trained again although the model was cached")

    _, again = cache.train_or_load("tiny", _tiny, train, config={}, data="d")
    assert again["cached"] is True and again["loss"] == 0.25


def test_a_model_that_trained_but_cannot_be_cached_is_saved_where_the_error_says(
    tmp_path, monkeypatch
):
    monkeypatch.setenv("KDLIB_CACHE_DIR", str(tmp_path))
    with pytest.raises(RuntimeError, match="cannot be cached") as caught:
        cache.train_or_load("lam", lambda: _tiny(lambda_layer=True), _train, config={}, data="d")
    entry = cache.entry("lam", {}, "d")
    kept = entry.with_name(f"{entry.stem}.unsaved.keras")
    assert str(kept) in str(caught.value) and kept.is_file()
    assert not entry.exists()  # no entry the cache could not read back

    def bad_info(model):
        return {"where": Path("somewhere")}

    with pytest.raises(RuntimeError, match=r"what train returned\['where'\]") as caught:
        cache.train_or_load("odd", _tiny, bad_info, config={}, data="d")
    assert "unsaved.keras" in str(caught.value)
