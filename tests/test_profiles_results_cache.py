"""kdlib.profiles, kdlib.results and kdlib.cache."""

import json
import os
import warnings

import keras
import numpy as np
import pytest

from kdlib import cache, profiles, results


@pytest.fixture
def toy_notebook(monkeypatch):
    monkeypatch.setitem(
        profiles.NOTEBOOKS,
        "99_toy",
        {"seed": 0, "epochs": profiles.P(1, 5, 50), "temperature": 4.0, "grid": profiles.P((2,), (2, 4), (2, 4, 8))},
    )


def test_profile_values_and_overrides(toy_notebook, monkeypatch):
    monkeypatch.delenv("KDLIB_PROFILE", raising=False)
    cfg = profiles.get("99_toy")
    assert cfg.profile == "cpu" and cfg.epochs == 5 and cfg.grid == (2, 4) and cfg.temperature == 4.0
    assert profiles.get("99_toy", "full").epochs == 50
    assert profiles.get("99_toy", "smoke", epochs=3, temperature=None).epochs == 3
    assert profiles.get("99_toy", "smoke", temperature=None).temperature == 4.0


def test_environment_overrides_the_notebook_default_but_not_an_explicit_profile(toy_notebook, monkeypatch):
    monkeypatch.setenv("KDLIB_PROFILE", "smoke")
    assert profiles.get("99_toy").profile == "smoke"
    assert profiles.get("99_toy", "full").profile == "full"


def test_unknown_profile_notebook_or_knob_lists_the_valid_names(toy_notebook, monkeypatch):
    with pytest.raises(ValueError, match="unknown profile 'gpu'; valid profiles: smoke, cpu, full"):
        profiles.get("99_toy", "gpu")
    monkeypatch.setenv("KDLIB_PROFILE", "laptop")
    with pytest.raises(ValueError, match="unknown profile 'laptop'"):
        profiles.get("99_toy")
    with pytest.raises(ValueError, match="unknown knob\\(s\\) temprature for 99_toy; valid knobs: seed, epochs, temperature, grid"):
        profiles.get("99_toy", "cpu", temprature=2.0)
    with pytest.raises(ValueError, match="unknown notebook '42_nothing'"):
        profiles.get("42_nothing")


def test_every_notebook_defines_its_knobs_for_all_profiles():
    for name, knobs in profiles.NOTEBOOKS.items():
        assert "seed" in knobs, name
        for knob, value in knobs.items():
            if isinstance(value, profiles.P):
                assert all(v is not None for v in value), (name, knob)


def test_run_record_is_written_atomically_with_what_a_reader_needs(tmp_path, toy_notebook):
    cfg = profiles.get("99_toy", "smoke", epochs=2)
    run = results.Run("99_toy", cfg, dataset="fashion_mnist", requested="cifar10")
    run.log(accuracy=np.float32(0.5), per_seed=np.array([0.1, 0.2]), headline={"student": 0.5})
    path = run.save(tmp_path)
    record = json.loads(path.read_text())
    assert record["profile"] == "smoke" and record["params"]["epochs"] == 2 and record["seed"] == 0
    assert record["dataset"] == "fashion_mnist" and record["requested_dataset"] == "cifar10"
    assert record["metrics"]["per_seed"] == [pytest.approx(0.1), pytest.approx(0.2)]
    assert {"python", "keras", "numpy", "kdlib"} <= set(record["versions"]) and record["wall_time_s"] >= 0
    assert [p.name for p in tmp_path.iterdir()] == ["99_toy.json"]  # no temporary file left
    table = results.summary(results.load(tmp_path))
    assert "fashion_mnist" in str(table) and "| notebook | profile |" in table._repr_markdown_()


def test_results_dir_follows_the_environment(tmp_path, monkeypatch):
    monkeypatch.setenv("KDLIB_RESULTS_DIR", str(tmp_path))
    assert results.results_dir() == tmp_path
    monkeypatch.delenv("KDLIB_RESULTS_DIR")
    assert results.results_dir() == results.REPO / "results"


def test_table_renders_text_and_markdown():
    t = results.Table([{"model": "teacher", "accuracy": 0.98765}, {"model": "student", "accuracy": float("nan")}])
    assert str(t).splitlines()[2].split() == ["teacher", "0.9877"]
    assert "| student | nan |" in t._repr_markdown_()


def _tiny():
    i = keras.Input((3,))
    return keras.Model(i, keras.layers.Dense(2)(i))


def test_cache_trains_once_then_loads(tmp_path, monkeypatch):
    monkeypatch.setenv("KDLIB_CACHE_DIR", str(tmp_path))
    calls = []

    def train(model):
        calls.append(1)
        model.layers[-1].kernel.assign(np.ones((3, 2)))
        return {"val_accuracy": 0.9}

    fp = cache.fingerprint(np.arange(10))
    m1, info1 = cache.train_or_load("tiny", _tiny, train, config={"epochs": 1}, data=fp)
    m2, info2 = cache.train_or_load("tiny", _tiny, train, config={"epochs": 1}, data=fp)
    assert calls == [1] and not info1["cached"] and info2["cached"] and info2["val_accuracy"] == 0.9
    np.testing.assert_array_equal(m2.layers[-1].kernel, np.ones((3, 2)))
    cache.train_or_load("tiny", _tiny, train, config={"epochs": 2}, data=fp)
    cache.train_or_load("tiny", _tiny, train, config={"epochs": 1}, data=cache.fingerprint(np.arange(11)))
    assert calls == [1, 1, 1]
    assert sorted(p.suffix for p in tmp_path.iterdir()) == [".json"] * 3 + [".keras"] * 3


def test_unreadable_cache_file_is_reported_and_retrained(tmp_path, monkeypatch):
    monkeypatch.setenv("KDLIB_CACHE_DIR", str(tmp_path))
    fp = cache.fingerprint(np.zeros(3))
    _, info = cache.train_or_load("tiny", _tiny, lambda m: {}, config={}, data=fp)
    with open(info["path"], "wb") as f:
        f.write(b"not a keras file")
    calls = []
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        model, info = cache.train_or_load("tiny", _tiny, lambda m: calls.append(1) or {}, config={}, data=fp)
    assert calls == [1] and not info["cached"]
    assert any("cannot read" in str(w.message) and "retraining" in str(w.message) for w in caught)
    assert cache.train_or_load("tiny", _tiny, lambda m: {}, config={}, data=fp)[1]["cached"]


def test_failed_training_leaves_no_cache_file(tmp_path, monkeypatch):
    monkeypatch.setenv("KDLIB_CACHE_DIR", str(tmp_path))

    def crash(model):
        raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        cache.train_or_load("tiny", _tiny, crash, config={}, data="x")
    assert not any(tmp_path.glob("*.keras"))


def test_fingerprint_depends_on_content_shape_and_dtype():
    a = np.arange(6)
    assert cache.fingerprint(a) == cache.fingerprint(np.arange(6))
    assert len({cache.fingerprint(a), cache.fingerprint(a.reshape(2, 3)), cache.fingerprint(a.astype(np.int32)), cache.fingerprint(a + 1)}) == 4


def test_default_cache_dir(monkeypatch):
    monkeypatch.delenv("KDLIB_CACHE_DIR", raising=False)
    assert cache.cache_dir() == cache.Path(os.path.expanduser("~/.cache/kdlib"))


def test_difference_compares_means_against_the_error_bars():
    assert results.difference([0.9, 0.92], [0.8, 0.82])["larger than the error bars"] == "yes"
    d = results.difference([0.9, 0.95], [0.89, 0.93])
    assert d["larger than the error bars"] == "no" and d["difference"] == "+0.0150" and d["std a + std b"] == "0.0450"
    assert results.difference([0.9], [0.8])["larger than the error bars"].startswith("n/a")


def test_mean_std_uses_the_population_spread_and_shows_a_single_value_alone():
    rng = np.random.default_rng(3)
    values = rng.uniform(0.8, 0.9, size=5)
    mean, std = float(np.mean(values, dtype=np.float64)), float(np.sqrt(np.mean((values - values.mean()) ** 2)))
    assert results.mean_std(values) == f"{mean:.4f} ± {std:.4f}"
    assert results.mean_std([127, 130, 126], digits=1) == "127.7 ± 1.7"
    assert results.mean_std([0.91234]) == "0.9123"
    with pytest.raises(ValueError, match="at least one"):
        results.mean_std([])
