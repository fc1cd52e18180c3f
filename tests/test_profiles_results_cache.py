"""kdlib.profiles, kdlib.results and kdlib.cache."""

import json
import os
import warnings
from pathlib import Path
from unittest import mock

import keras
import numpy as np
import pytest

from kdlib import cache, profiles, results


@pytest.fixture
def toy_notebook(monkeypatch):
    monkeypatch.setitem(
        profiles.NOTEBOOKS,
        "99_toy",
        {
            "seed": 0,
            "epochs": profiles.P(1, 5, 50),
            "temperature": 4.0,
            "student_hidden": profiles.P((2,), (2, 4), (2, 4, 8)),
        },
    )


def test_profile_values_and_overrides(toy_notebook, monkeypatch):
    monkeypatch.delenv("KDLIB_PROFILE", raising=False)
    cfg = profiles.get("99_toy")
    assert (
        cfg.profile == "cpu"
        and cfg.epochs == 5
        and cfg.student_hidden == (2, 4)
        and cfg.temperature == 4.0
    )
    assert profiles.get("99_toy", "full").epochs == 50
    assert profiles.get("99_toy", "smoke", epochs=3, temperature=None).epochs == 3
    assert profiles.get("99_toy", "smoke", temperature=None).temperature == 4.0


def test_environment_overrides_the_notebook_default_but_not_an_explicit_profile(
    toy_notebook, monkeypatch
):
    monkeypatch.setenv("KDLIB_PROFILE", "smoke")
    assert profiles.get("99_toy").profile == "smoke"
    assert profiles.get("99_toy", "full").profile == "full"


def test_unknown_profile_notebook_or_knob_lists_the_valid_names(toy_notebook, monkeypatch):
    with pytest.raises(ValueError, match="unknown profile 'gpu'; valid profiles: smoke, cpu, full"):
        profiles.get("99_toy", "gpu")
    monkeypatch.setenv("KDLIB_PROFILE", "laptop")
    with pytest.raises(ValueError, match="unknown profile 'laptop'"):
        profiles.get("99_toy")
    with pytest.raises(
        ValueError,
        match="unknown setting\\(s\\) temprature for 99_toy; valid settings: seed, epochs, "
        "temperature, student_hidden",
    ):
        profiles.get("99_toy", "cpu", temprature=2.0)
    with pytest.raises(ValueError, match="unknown notebook '42_nothing'"):
        profiles.get("42_nothing")


def test_a_papermill_parameter_that_is_no_setting_is_refused(toy_notebook):
    """papermill only warns about ``-p epoch 3``; the kernel's input history (``In``) holds its
    injected cell, so the notebook stops at once. Other names in the kernel (the Colab cell's,
    imports) are not parameters and pass."""
    injected = '# Parameters\nprofile = "smoke"\nepoch = 3\n'
    ns = dict.fromkeys(profiles.NOTEBOOKS["99_toy"])
    ns.update(profile="smoke", epoch=3, source="git+https://...", In=["", "x = 1", injected])
    with pytest.raises(ValueError, match="unknown setting\\(s\\) epoch for 99_toy"):
        profiles.from_cell("99_toy", ns)
    ns.update(epochs=3, In=["", injected.replace("epoch =", "epochs =")])
    assert profiles.from_cell("99_toy", ns).epochs == 3
    assert profiles.from_cell("99_toy", {**ns, "In": None}).epochs == 3  # not in IPython


def test_every_setting_of_every_notebook_has_a_spec_and_valid_values_at_every_profile():
    for name, knobs in profiles.NOTEBOOKS.items():
        assert "seed" in knobs and "seeds" in knobs, name
        assert set(knobs) <= set(profiles.SPECS), (name, set(knobs) - set(profiles.SPECS))
        for profile in profiles.PROFILES:
            profiles.get(name, profile)  # every profile's values pass their checks


@pytest.mark.parametrize(
    "overrides,message",
    [
        ({"epochs": "abc"}, "epochs must be a number"),
        ({"epochs": 2.5}, "epochs must be a whole number"),
        ({"epochs": 0}, r"epochs must be in \[1, inf\]"),
        ({"temperature": -1}, r"temperature must be in \[0.001, 10000\]"),
        ({"alpha": 1.5}, r"alpha must be in \[0, 1\]"),
        ({"alpha": float("nan")}, "alpha must be finite"),
        ({"seeds": True}, "seeds must be a number"),
        (
            {"n_transfer": 1000000},
            "n_transfer=1,000,000 but mnist has 60,000 training images and n_val=5,000 "
            "leaves 55,000",
        ),
        ({"n_val": 60000}, "leaves no training image"),
        ({"student_hidden": "128"}, "student_hidden must be a non-empty list"),
        ({"student_hidden": [128, 0]}, r"each of student_hidden must be in \[1, inf\]"),
    ],
)
def test_bad_settings_are_refused_before_any_work_with_the_setting_and_its_range(
    overrides, message
):
    with pytest.raises(ValueError, match=message):
        profiles.get("00_soft_targets_temperature", "cpu", **overrides)


def test_the_stand_in_datasets_sizes_are_checked_too():
    with pytest.raises(ValueError, match="mixed_precision must be one of"):
        profiles.get("02_densenet_teacher_student_mnist", "cpu", mixed_precision="fp8")
    with pytest.raises(ValueError, match="dataset must be one of"):
        profiles.get("03_fitnet_hints_cifar10", "cpu", dataset="imagenet")
    with pytest.raises(
        ValueError,
        match="n_teacher=48,000 but cifar10 has 50,000 training images and n_val=5,000 leaves",
    ):
        profiles.get("04_teacher_assistant_cifar10", "cpu", n_teacher=48000)
    assert profiles.get("04_teacher_assistant_cifar10", "cpu", n_teacher=45000).n_teacher


def test_budgets_that_leave_no_room_are_refused_before_any_work():
    with pytest.raises(ValueError, match="hint_epochs=13 must be fewer than epochs=13"):
        profiles.get("03_fitnet_hints_cifar10", "cpu", hint_epochs=13)
    with pytest.raises(ValueError, match="needs two depths above assistant_depth=6"):
        profiles.get(
            "04_teacher_assistant_cifar10", "cpu", assistant_depth=6, teacher_depths=[4, 8]
        )
    assert profiles.get("04_teacher_assistant_cifar10", "cpu", assistant_depth=6).assistant_depth
    with pytest.raises(
        ValueError,
        match="n_train=71,000 but svhn has 73,257 training images and n_val=2,500 leaves 70,757",
    ):
        profiles.get("05_quantized_student_svhn", "cpu", n_train=71000)


def test_parameters_cells_declare_every_setting_once():
    for name, knobs in profiles.NOTEBOOKS.items():
        namespace = {}
        exec(profiles.parameters_cell(name), namespace)
        declared = [k for k in namespace if k != "__builtins__"]
        assert declared == ["profile", *knobs], name
        assert all(namespace[k] is None for k in declared)
        cfg = profiles.from_cell(
            name, {**namespace, "epochs": 3} if "epochs" in knobs else namespace
        )
        assert cfg.profile == profiles.resolve() and cfg.get("epochs", 3) == 3
    with pytest.raises(ValueError, match="does not define seeds"):
        profiles.from_cell("00_soft_targets_temperature", {"profile": None, "seed": None})


def test_run_record_is_written_atomically_with_what_a_reader_needs(tmp_path, toy_notebook):
    cfg = profiles.get("99_toy", "smoke", epochs=2)
    run = results.Run("99_toy", cfg, dataset="fashion_mnist", requested="cifar10")
    run.log(
        accuracy=np.float32(0.5),
        per_seed=np.array([0.1, 0.2]),
        headline={"student": 0.5},
        lost=float("nan"),
        inf=[1.0, np.inf],
    )
    path = run.save(tmp_path)
    record = json.loads(path.read_text())  # strict JSON: no NaN
    assert record["profile"] == "smoke" and record["params"]["epochs"] == 2 and record["seed"] == 0
    assert record["dataset"] == "fashion_mnist" and record["requested_dataset"] == "cifar10"
    assert record["metrics"]["per_seed"] == [pytest.approx(0.1), pytest.approx(0.2)]
    assert record["metrics"]["lost"] is None and record["metrics"]["inf"] == [1.0, None]
    assert {"python", "keras", "numpy", "kdlib"} <= set(record["versions"]) and record[
        "wall_time_s"
    ] >= 0
    assert {"processor", "cpu_cores", "accelerators", "backend", "dtype_policy"} <= set(
        record["machine"]
    )
    assert record["git_commit"] and isinstance(record["git_dirty"], bool)  # this is a git checkout
    assert record["resumed"] is False and record["from_cache"] == []
    assert [p.name for p in tmp_path.iterdir()] == ["99_toy.json"]  # no temporary file left
    text = results.summary(results.load(tmp_path))
    assert (
        "99_toy · smoke profile · fashion_mnist (stand-in for cifar10)" in text
        and "student" in text
    )


def test_records_go_to_the_run_folder_unless_told_otherwise(tmp_path, monkeypatch, toy_notebook):
    monkeypatch.delenv("KDLIB_RESULTS_DIR")
    assert results.results_dir("smoke") == results.REPO / "runs" / "smoke"
    monkeypatch.setenv("KDLIB_RESULTS_DIR", "relative/records")
    monkeypatch.chdir(tmp_path)
    assert results.results_dir() == tmp_path / "relative" / "records"  # absolute, resolved now
    assert results.committed_dir("cpu") == results.REPO / "results"
    assert results.committed_dir("full") == results.REPO / "results" / "full"
    with pytest.raises(ValueError, match="only the cpu and full runs are committed"):
        results.committed_dir("smoke")
    run = results.Run("../../escape", {"profile": "smoke"})
    path = run.save(tmp_path / "here")
    assert path.parent == tmp_path / "here" and path.name == "_.._.._escape.json"


def test_a_broken_record_is_named(tmp_path):
    (tmp_path / "00_x.json").write_text('{"notebook": "00_x", "profile": "cpu"')
    with pytest.raises(ValueError, match="00_x.json: not a readable kdlib record"):
        results.load(tmp_path)


def test_table_renders_text_and_markdown():
    t = results.Table(
        [{"model": "teacher", "accuracy": 0.98765}, {"model": "student", "accuracy": float("nan")}]
    )
    assert str(t).splitlines()[2].split() == ["teacher", "0.9877"]
    assert "| student | nan |" in t._repr_markdown_()
    captioned = results.Table([{"model": "m", "accuracy": 0.5}], caption="test accuracy (X)")
    assert str(captioned).splitlines()[0] == "test accuracy (X)"
    assert captioned._repr_markdown_().startswith("**test accuracy (X)**\n\n| model |")


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
    assert cache.loaded()[-1] == {
        "name": "tiny",
        "file": Path(info2["path"]).name,
        "train_seconds": None,
    }
    np.testing.assert_array_equal(m2.layers[-1].kernel, np.ones((3, 2)))
    cache.train_or_load("tiny", _tiny, train, config={"epochs": 2}, data=fp)
    cache.train_or_load(
        "tiny", _tiny, train, config={"epochs": 1}, data=cache.fingerprint(np.arange(11))
    )
    assert calls == [1, 1, 1]
    assert sorted(p.suffix for p in tmp_path.iterdir()) == [".json"] * 3 + [".keras"] * 3


def test_the_cache_keeps_a_trained_model_without_its_optimizer_state(tmp_path, monkeypatch):
    import zipfile

    import h5py

    monkeypatch.setenv("KDLIB_CACHE_DIR", str(tmp_path))
    x = np.random.default_rng(0).normal(size=(32, 3)).astype("float32")
    y = np.arange(32) % 2

    def build():
        i = keras.Input((3,))
        h = keras.layers.BatchNormalization()(keras.layers.Dense(4, name="hidden")(i))
        model = keras.Model(i, keras.layers.Dense(2, name="out")(h))
        model.compile("adam", "sparse_categorical_crossentropy")
        return model

    def train(model):
        model.fit(x, y, epochs=2, verbose=0)
        return {}

    trained, info = cache.train_or_load("fit", build, train, config={}, data="d")
    loaded, _ = cache.train_or_load("fit", build, train, config={}, data="d")
    np.testing.assert_allclose(loaded.predict(x, verbose=0), trained.predict(x, verbose=0))
    assert [layer.name for layer in loaded.layers] == [layer.name for layer in trained.layers]
    with zipfile.ZipFile(info["path"]) as z, z.open("model.weights.h5") as f:
        assert "optimizer" not in h5py.File(f)


def test_a_record_names_the_models_its_run_loaded_and_how_long_they_had_trained(
    tmp_path, monkeypatch, toy_notebook
):
    monkeypatch.setenv("KDLIB_CACHE_DIR", str(tmp_path))
    cache.train_or_load("before", _tiny, lambda m: {"seconds": 9.0}, config={}, data="d")
    cache.train_or_load("before", _tiny, lambda m: {}, config={}, data="d")  # another run's load
    run = results.Run("99_toy", profiles.get("99_toy", "smoke"))
    for _ in range(2):
        cache.train_or_load("teacher", _tiny, lambda m: {"seconds": 61.5}, config={}, data="d")
    assert [(e["name"], e["train_seconds"]) for e in run.record()["from_cache"]] == [
        ("teacher", 61.5)
    ]


@pytest.mark.parametrize("meta", ["", '{"best', "[1, 2]"])
def test_an_empty_or_truncated_cache_record_is_retrained_not_fatal(tmp_path, monkeypatch, meta):
    monkeypatch.setenv("KDLIB_CACHE_DIR", str(tmp_path))
    fp = cache.fingerprint(np.zeros(3))
    _, info = cache.train_or_load("tiny", _tiny, lambda m: {"a": 1}, config={}, data=fp)
    cache.Path(info["path"]).with_suffix(".json").write_text(meta)
    calls = []
    with pytest.warns(UserWarning, match="retraining"):
        _, info = cache.train_or_load(
            "tiny", _tiny, lambda m: calls.append(1) or {}, config={}, data=fp
        )
    assert calls == [1] and not info["cached"]


def test_an_unwritable_cache_is_found_before_training(tmp_path, monkeypatch):
    blocker = tmp_path / "file"
    blocker.write_text("")
    monkeypatch.setenv("KDLIB_CACHE_DIR", str(blocker / "cache"))  # under a file: cannot exist
    calls = []
    with pytest.raises(PermissionError, match="cannot write to the kdlib cache|KDLIB_CACHE_DIR"):
        cache.train_or_load("tiny", _tiny, lambda m: calls.append(1) or {}, config={}, data="x")
    assert calls == []


def test_names_cannot_leave_their_folder(tmp_path, monkeypatch):
    monkeypatch.setenv("KDLIB_CACHE_DIR", str(tmp_path / "cache"))
    _, info = cache.train_or_load("../../outside", _tiny, lambda m: {}, config={}, data="x")
    assert cache.Path(info["path"]).parent == tmp_path / "cache"
    assert cache.safe_name("../x y") == "_.._x_y" and cache.safe_name("a.b-c_1") == "a.b-c_1"
    with pytest.raises(ValueError, match="non-empty string"):
        cache.safe_name("")


def test_unreadable_cache_file_is_reported_and_retrained(tmp_path, monkeypatch):
    monkeypatch.setenv("KDLIB_CACHE_DIR", str(tmp_path))
    fp = cache.fingerprint(np.zeros(3))
    _, info = cache.train_or_load("tiny", _tiny, lambda m: {}, config={}, data=fp)
    with open(info["path"], "wb") as f:
        f.write(b"not a keras file")
    calls = []
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        model, info = cache.train_or_load(
            "tiny", _tiny, lambda m: calls.append(1) or {}, config={}, data=fp
        )
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
    assert (
        len(
            {
                cache.fingerprint(a),
                cache.fingerprint(a.reshape(2, 3)),
                cache.fingerprint(a.astype(np.int32)),
                cache.fingerprint(a + 1),
            }
        )
        == 4
    )


def test_default_cache_dir(monkeypatch):
    monkeypatch.delenv("KDLIB_CACHE_DIR", raising=False)
    assert cache.cache_dir() == cache.Path(os.path.expanduser("~/.cache/kdlib"))


def test_describe_names_the_builder_and_its_arguments():
    import functools

    from kdlib import models

    described = cache.describe(
        functools.partial(models.mlp, (28, 28, 1), hidden=(800, 800), name="s")
    )
    assert described == {
        "builder": "kdlib.models.mlp",
        "args": [(28, 28, 1)],
        "kwargs": {"hidden": (800, 800), "name": "s"},
    }
    assert cache.describe(models.mlp)["builder"] == "kdlib.models.mlp"


def test_compare_is_scipys_paired_or_welch_t_test():
    from scipy import stats

    rng = np.random.default_rng(4)
    a, b = rng.normal(0.9, 0.01, 5), rng.normal(0.88, 0.01, 5)
    paired = results.compare(a, b)
    reference = stats.ttest_rel(a, b)
    assert paired.p == pytest.approx(reference.pvalue) and paired.test == "paired t"
    d = a - b  # the confidence interval of the mean difference, from the t distribution
    half = stats.t.ppf(0.975, len(d) - 1) * d.std(ddof=1) / np.sqrt(len(d))
    assert (paired.low, paired.high) == (
        pytest.approx(d.mean() - half),
        pytest.approx(d.mean() + half),
    )
    welch = results.compare(a, b, paired=False)
    assert (
        welch.p == pytest.approx(stats.ttest_ind(a, b, equal_var=False).pvalue)
        and welch.test == "Welch t"
    )
    assert results.compare(
        [0.9, 0.91, 0.92], [0.8, 0.81, 0.82]
    ).beyond_noise  # the same gain every seed
    noisy = results.compare([0.90, 0.80, 0.85], [0.85, 0.86, 0.84])
    assert not noisy.beyond_noise and "within noise" in noisy.verdict
    assert results.compare([0.9], [0.8]).verdict.startswith("n/a")
    assert results.compare([0.9], [0.8]).p_text == "no test"  # not a TypeError on p = None
    tiny = results.compare([0.9, 0.91, 0.92, 0.93], [0.8, 0.8101, 0.8199, 0.83])
    assert tiny.p < 0.001 and "(p < 0.001, paired t)" in tiny.verdict  # never "p = 0.000"
    assert set(paired.row()) == {"difference", "95% CI", "beyond noise?"}
    with pytest.raises(ValueError, match="one value per seed"):
        results.compare([1, 2, 3], [1, 2])


def _holm_step_down(p, level):
    """Holm's procedure as the paper states it: sort the p-values; reject while the i-th
    smallest (i from 0) is below level / (m - i); stop at the first that is not."""
    rejected = set()
    for i, k in enumerate(np.argsort(p, kind="stable")):
        if p[k] >= level / (len(p) - i):
            break
        rejected.add(int(k))
    return rejected


def test_holm_adjusted_p_values_reject_what_the_step_down_procedure_rejects():
    rng = np.random.default_rng(11)
    for m in (1, 2, 3, 5, 10):
        for _ in range(200):
            p = rng.uniform(0, 0.2, m) ** rng.uniform(0.5, 3)
            adjusted = np.array(results.holm(p))
            assert np.all(adjusted >= p) and np.all(adjusted <= 1)
            for level in (0.01, 0.05, 0.1):
                assert set(np.flatnonzero(adjusted < level)) == _holm_step_down(p, level)
    assert results.holm([0.01, 0.04, 0.03]) == pytest.approx([0.03, 0.06, 0.06])
    with pytest.raises(ValueError, match="p-values in"):
        results.holm([0.5, 1.5])


def test_compare_all_adjusts_a_family_and_the_table_and_verdicts_agree():
    gain = ([0.90, 0.91, 0.92, 0.93], [0.89, 0.895, 0.918, 0.917])  # p = 0.040 alone
    noise = ([0.90, 0.80, 0.85, 0.86], [0.85, 0.86, 0.84, 0.83])
    alone = results.compare(*gain)
    assert alone.beyond_noise and alone.p_holm is None
    found = results.compare_all([("gain", *gain), ("noise", *noise), ("again", *noise)])
    assert found["gain"].p == pytest.approx(alone.p)  # the raw p-value is kept
    expected = results.holm([found[k].p for k in ("gain", "noise", "again")])
    assert [found[k].p_holm for k in ("gain", "noise", "again")] == pytest.approx(expected)
    assert found["gain"].family == 3 and not found["gain"].beyond_noise  # 3 x 0.040 > 0.05
    assert "; Holm over 3: p = 0." in found["gain"].verdict
    assert found["gain"].verdict.startswith("within noise")
    one = results.compare_all([("gain", *gain), ("single", [0.9], [0.8])])  # one real test
    assert one["gain"].p_holm is None and one["gain"].beyond_noise
    table = results.compare_table([("gain", *gain), ("noise", *noise)], caption="on X")
    assert str(table).startswith("on X\n")
    assert (
        table.rows[0]["beyond noise?"]
        == results.compare_all([("gain", *gain), ("noise", *noise)])["gain"].verdict
    )
    with pytest.raises(ValueError, match="distinct labels"):
        results.compare_all([("a", *gain), ("a", *noise)])


def test_mean_std_uses_the_sample_spread_and_shows_a_single_value_alone():
    rng = np.random.default_rng(3)
    values = rng.uniform(0.8, 0.9, size=5)
    mean, std = float(np.mean(values)), float(np.sqrt(np.sum((values - values.mean()) ** 2) / 4))
    assert results.mean_std(values) == f"{mean:.4f} ± {std:.4f}"
    assert results.mean_std([127, 130, 126], digits=1) == "127.7 ± 2.1"
    assert results.mean_std([0.91234]) == "0.9123"
    with pytest.raises(ValueError, match="at least one"):
        results.mean_std([])


def test_git_commit_names_the_callers_commit_where_given(tmp_path, monkeypatch):
    """A lent GPU machine's copy of the tree may carry a stale .git (or none): the record names
    the commit make device-full was given (SOURCE_COMMIT) and leaves 'dirty' unknown."""
    monkeypatch.delenv("KDLIB_SOURCE_COMMIT", raising=False)
    here = results.git_commit()
    assert here["commit"] and isinstance(here["dirty"], bool)  # this checkout's git
    monkeypatch.setenv("KDLIB_SOURCE_COMMIT", "abc1234")
    assert results.git_commit() == {"commit": "abc1234", "dirty": None}  # over this checkout's
    monkeypatch.setattr(results, "REPO", tmp_path)  # not a git checkout
    assert results.git_commit() == {"commit": "abc1234", "dirty": None}
    monkeypatch.delenv("KDLIB_SOURCE_COMMIT")
    assert results.git_commit() == {"commit": None, "dirty": None}


def test_source_env_carries_the_tree_as_found_to_another_process(monkeypatch):
    """What the runner hands its kernels: git_commit() there reports the tree the runner found,
    whatever the checkout has become since."""
    for var in ("KDLIB_SOURCE_COMMIT", "KDLIB_SOURCE_DIRTY"):
        monkeypatch.delenv(var, raising=False)
    real = results.git_commit
    for dirty, flag in ((False, "0"), (True, "1")):
        found = {"commit": "aaa1111", "dirty": dirty}
        monkeypatch.setattr(results, "git_commit", lambda found=found: found)
        env = results.source_env()
        assert env == {"KDLIB_SOURCE_COMMIT": "aaa1111", "KDLIB_SOURCE_DIRTY": flag}
        monkeypatch.setattr(results, "git_commit", real)
        with mock.patch.dict(os.environ, env):
            assert results.git_commit() == {"commit": "aaa1111", "dirty": dirty}
    monkeypatch.setattr(results, "git_commit", lambda: {"commit": None, "dirty": None})
    assert results.source_env() == {}  # nothing known: nothing pinned


def test_a_record_names_the_commit_its_run_started_from(monkeypatch):
    """A long run (01 at full: hours) outlives edits to the checkout; its record describes the
    code it executed, read when the run began, not the tree at the moment it is saved."""
    monkeypatch.setattr(results, "git_commit", lambda: {"commit": "aaa1111", "dirty": False})
    run = results.Run("00_soft_targets_temperature", {"profile": "smoke"})
    monkeypatch.setattr(results, "git_commit", lambda: {"commit": "bbb2222", "dirty": True})
    record = run.record()  # the checkout was edited and committed while the run went on
    assert (record["git_commit"], record["git_dirty"]) == ("aaa1111", False)


def test_val_curves_keep_each_runs_validation_accuracy_and_nothing_else():
    from kdlib import plots

    hist = {"loss": [0.9, 0.5], "val_loss": [0.8, 0.6], "val_accuracy": [0.91, 0.95]}
    other = {"loss": [1.0, 0.4], "val_accuracy": np.array([0.90, 0.97])}
    kept = results.val_curves({"alone": [hist, other], 7: [hist]})
    assert kept == {
        "alone": [{"val_accuracy": [0.91, 0.95]}, {"val_accuracy": [0.90, 0.97]}],
        "7": [{"val_accuracy": [0.91, 0.95]}],
    }
    assert json.loads(json.dumps(results._plain(kept))) == kept  # a record can hold it
    fig = plots.curves(kept)  # and a figure can be drawn again from it
    assert len(fig.axes[0].lines) == 2


def test_a_run_records_each_comparison_once_with_the_verdict_its_table_shows(toy_notebook):
    run = results.Run("99_toy", profiles.get("99_toy", "smoke"))
    gain = ([0.90, 0.91, 0.92, 0.93], [0.89, 0.895, 0.918, 0.917])
    noise = ([0.90, 0.80, 0.85, 0.86], [0.85, 0.86, 0.84, 0.83])
    family = run.compare("students", [("gain", *gain), ("noise", *noise)])
    recorded = run.record()["metrics"]["comparisons"]
    assert set(recorded) == {"gain", "noise"}
    assert recorded["gain"]["p_holm"] == pytest.approx(family["gain"].p_holm)
    assert recorded["gain"]["verdict"] == family["gain"].verdict
    assert recorded["gain"]["family"] == "students" and recorded["gain"]["family_size"] == 2
    assert recorded["noise"]["a"] == pytest.approx(noise[0])
    assert family.table().rows[0]["beyond noise?"] == recorded["gain"]["verdict"]
    with pytest.raises(ValueError, match="'gain' already has a verdict.*'students'"):
        run.compare("again", [("gain", *gain)])  # the same comparison, a second family
    with pytest.raises(ValueError, match="recorded by Run.compare"):
        run.log(comparisons={})
    with pytest.raises(ValueError, match="not recorded: nope"):
        run.findings(effect="gain", contrast="nope")
    run.findings(effect="gain", contrast="noise")
    assert run.record()["metrics"]["findings"] == {"effect": "gain", "contrast": "noise"}
