"""kdlib.export: the student saved alone, every format loaded back in its own runtime and
checked against Keras, int8 size and accuracy, the quantization-aware student, and the errors.

Tiny models trained for a few epochs on synthetic classes (a fixed random prototype image per
class plus Gaussian noise), so accuracies are well above chance but below 100 %.
"""

import io
import json
import os
import subprocess
import sys
import tempfile
import textwrap
import zipfile

import h5py
import keras
import numpy as np
import pytest

from kdlib import distill, models
from kdlib import export as ex

TF = keras.backend.backend() == "tensorflow"
needs_tf = pytest.mark.skipif(
    not TF, reason="the converters behind these formats need the TensorFlow backend"
)
CLASSES = 4


def _data(shape, n, seed, noise):
    """``n`` images: class prototype (the same for every seed) plus ``noise`` * N(0, 1)."""
    protos = np.random.default_rng(99).normal(size=(CLASSES, *shape)).astype("float32")
    rng = np.random.default_rng(seed)
    y = rng.integers(0, CLASSES, n)
    return (protos[y] + noise * rng.normal(size=(n, *shape))).astype("float32"), y


def _fit(model, x, y, epochs):
    model.compile("adam", keras.losses.SparseCategoricalCrossentropy(from_logits=True))
    model.fit(x, y, epochs=epochs, batch_size=64, verbose=0)
    return model


@pytest.fixture(scope="module")
def mlp_case(tmp_path_factory):
    """A 2x256 MLP on 16x16x1 images (~133 k weights, so file overhead does not dominate) and
    :func:`deploy_table` over every format."""
    shape = (16, 16, 1)
    x, y = _data(shape, 1024, seed=0, noise=4.0)
    xt, yt = _data(shape, 1000, seed=1, noise=4.0)
    keras.utils.set_random_seed(0)
    model = _fit(models.mlp(shape, CLASSES, hidden=(256, 256)), x, y, epochs=3)
    formats = ex.FORMATS if TF else ("keras",)
    folder = tmp_path_factory.mktemp("mlp")
    rows, record = ex.deploy_table(
        {"mlp": model}, folder, xt, yt, x[:200], formats=formats, repeats=5, warmup=2
    )
    for entry in record["mlp"].values():  # the record names the file; the tests open it
        entry["path"] = str(folder / entry["file"])
    return model, xt, yt, rows, record["mlp"]


@pytest.fixture(scope="module")
def qat_case(tmp_path_factory):
    """Notebook 05's quantization-aware student (4-bit weights and activations, width 0.25),
    on 16x16x3 images, exported to float and int8 LiteRT."""
    shape = (16, 16, 3)
    x, y = _data(shape, 1024, seed=2, noise=1.0)
    xt, yt = _data(shape, 1000, seed=3, noise=1.0)
    keras.utils.set_random_seed(1)
    model = _fit(
        models.svhn_cnn(shape, CLASSES, width=0.25, weight_bits=4, activation_bits=4),
        x,
        y,
        epochs=4,
    )
    rows, record = ex.deploy_table(
        {"qat": model},
        tmp_path_factory.mktemp("qat"),
        xt,
        yt,
        x[:200],
        formats=("litert", "litert_int8"),
        repeats=3,
        warmup=1,
    )
    return model, rows, record["qat"]


# --------------------------------------------------------------------------- the student alone


def _h5_datasets(keras_file):
    """``{path: array}`` of every weight array inside a .keras file's model.weights.h5."""
    with zipfile.ZipFile(keras_file) as z:
        blob = z.read("model.weights.h5")
    found = {}

    def visit(name, obj):  # returns None: visititems stops at the first non-None return
        if isinstance(obj, h5py.Dataset):
            found[name] = obj[()]

    with h5py.File(io.BytesIO(blob), "r") as f:
        f.visititems(visit)
    return found


@pytest.mark.backend
def test_student_of_picks_the_student_and_refuses_other_things():
    student, teacher = (
        models.mlp((4, 4, 1), CLASSES, hidden=(8,)),
        models.mlp((4, 4, 1), CLASSES, hidden=(16,)),
    )
    assert ex.student_of(distill.Distiller(student, teacher)) is student
    assert ex.student_of(student) is student
    for bad in (None, "model.keras", np.zeros(3)):
        with pytest.raises(ValueError, match="keras.Model or a kdlib or Keras Distiller"):
            ex.student_of(bad)


@pytest.mark.backend
def test_the_saved_student_holds_no_teacher_weight_and_no_optimizer_state(tmp_path):
    shape = (16, 16, 1)
    x, y = _data(shape, 256, seed=4, noise=1.0)
    keras.utils.set_random_seed(2)
    student = models.mlp(shape, CLASSES, hidden=(256,), name="student")  # 66 k weights
    teacher = _fit(
        models.mlp(shape, CLASSES, hidden=(512, 512), name="teacher"), x, y, epochs=1
    )  # 396 k
    dist = distill.Distiller(student, teacher)
    dist.compile("adam")
    dist.fit(x, y, epochs=1, batch_size=64, verbose=0)
    _fit(student, x, y, epochs=1)  # the student now also has its own optimizer state

    path = ex.save_student(dist, tmp_path / "student.keras")
    inside = _h5_datasets(path)
    dist.save_weights(tmp_path / "distiller.weights.h5")  # what saving the Distiller ships
    distiller_shapes = []
    with h5py.File(tmp_path / "distiller.weights.h5", "r") as f:
        f.visititems(
            lambda n, o: distiller_shapes.append(o.shape) if isinstance(o, h5py.Dataset) else None
        )

    # exactly the student's weights, by value; no teacher array, no optimizer group
    assert not [p for p in inside if "optimizer" in p]
    assert all(p.startswith("layers/") for p in inside), sorted(inside)
    assert len(inside) == len(student.weights)
    assert sum(a.size for a in inside.values()) == student.count_params()
    for w in student.get_weights():  # each array is one of the trained student's, value for value
        assert sum(a.shape == w.shape and np.array_equal(a, w) for a in inside.values()) == 1
    teacher_shapes = {tuple(w.shape) for w in teacher.weights} - {
        tuple(w.shape) for w in student.weights
    }
    assert teacher_shapes & {
        tuple(s) for s in distiller_shapes
    }  # the Distiller's file carries the teacher ...
    assert not teacher_shapes & {
        a.shape for a in inside.values()
    }  # ... the student's file does not
    with zipfile.ZipFile(path) as z:
        assert b"teacher" not in z.read("config.json")
    # size: the student's float32 parameters plus a little container overhead
    float32 = 4 * student.count_params()
    assert float32 < ex.size_bytes(path) < 1.15 * float32
    assert ex.size_bytes(path) < 0.2 * ex.size_bytes(tmp_path / "distiller.weights.h5")
    # and it loads back in Keras, giving the student's logits
    runner = ex.load_runner(path)
    np.testing.assert_allclose(runner(x[:50]), ex.keras_logits(student, x[:50]), atol=1e-5)


# --------------------------------------------------------------------------- every format


@needs_tf
def test_every_format_loads_in_its_own_runtime_and_agrees_with_keras(mlp_case):
    model, xt, yt, rows, record = mlp_case
    assert [r["format"] for r in rows] == list(ex.FORMATS)
    runtimes = {
        "keras": "_KerasRunner",
        "saved_model": "_SavedModelRunner",
        "litert": "_LiteRTRunner",
        "litert_int8": "_LiteRTRunner",
        "litert_int16x8": "_LiteRTRunner",
        "onnx": "_OnnxRunner",
    }
    keras_accuracy = record["keras"]["keras_accuracy"]
    assert 0.8 < keras_accuracy < 1.0  # learnt, and not trivially
    for fmt in ex.FORMATS:
        runner = ex.load_runner(record[fmt]["path"])
        assert type(runner).__name__ == runtimes[fmt] and runner.format == fmt
        if fmt not in ex.CALIBRATED:
            assert record[fmt]["agreement"] >= 0.995, (fmt, record[fmt])
            assert record[fmt]["max_abs_diff"] < 1e-3, (fmt, record[fmt])
    for fmt in ex.CALIBRATED:  # int8 weights: a quarter of the float file, as accurate
        quantized = record[fmt]
        assert abs(quantized["accuracy"] - keras_accuracy) <= 0.005, (fmt, quantized)
        assert quantized["bytes"] <= 0.30 * record["litert"]["bytes"], (fmt, quantized["bytes"])
    assert record["litert_int16x8"]["agreement"] >= record["litert_int8"]["agreement"]
    assert record["litert"]["bytes"] < 1.05 * 4 * model.count_params()


@needs_tf
def test_int16_activations_keep_what_one_int8_scale_loses(tmp_path):
    """Why ``litert_int16x8`` exists: a concatenation joining channels of very different ranges
    (DenseNet's; here 1 against 100) shares one per-tensor int8 scale, which rounds the small
    channels away before the pre-activation BatchNorm scales them back up; int16 activations
    keep them."""
    inputs = keras.Input((8,))
    small = keras.layers.Dense(16)(inputs)
    large = keras.layers.Rescaling(100.0)(keras.layers.Dense(16)(inputs))
    norm = keras.layers.BatchNormalization()
    hidden = keras.layers.ReLU()(norm(keras.layers.Concatenate()([small, large])))
    model = keras.Model(inputs, keras.layers.Dense(CLASSES)(hidden))
    x = np.random.default_rng(4).normal(size=(500, 8)).astype("float32")
    std = np.concatenate([np.ones(16), np.full(16, 100.0)]) * np.sqrt(8 / 3)  # glorot, unit x
    norm.set_weights([np.ones(32), np.zeros(32), np.zeros(32), std**2])
    reference = ex.keras_logits(model, x)
    error = {}
    for fmt in ex.CALIBRATED:
        path = ex.export(model, ex.path_for(tmp_path, "m", fmt), fmt, representative=x[:200])
        out = ex.load_runner(path)(x)
        error[fmt] = np.abs(out - reference).mean() / np.abs(reference).mean()
    assert error["litert_int16x8"] < 0.02 and error["litert_int8"] > 0.1, error


@needs_tf
def test_the_table_rows_and_record_are_complete(mlp_case):
    *_, rows, record = mlp_case
    for row in rows:
        assert set(row) == {
            "model",
            "format",
            "bytes",
            "accuracy",
            "agreement",
            "batch 1 ms",
            "batch 256 ms",
        }
        assert (
            row["model"] == "mlp"
            and int(row["bytes"].replace(",", "")) > 0
            and 0 <= float(row["accuracy"]) <= 1
        )
        assert "(" in row["batch 1 ms"] and "–" in row["batch 256 ms"]
    for fmt, entry in record.items():
        for b in ("batch_1", "batch_256"):
            t = entry["latency_ms"][b]
            assert 0 < t["min"] <= t["median"] <= t["max"], (fmt, b, t)
    json.dumps(record)  # plain numbers and strings, ready for a run record


@needs_tf
@pytest.mark.parametrize("fmt", ["litert", "onnx"])
def test_runners_take_any_batch_size(mlp_case, fmt):
    model, xt, *_, record = mlp_case
    runner = ex.load_runner(record[fmt]["path"])
    x = np.concatenate([xt, xt[:300]])  # 1300 images: more than one runtime call (BATCH = 1024)
    reference = ex.keras_logits(model, x)
    for n in (1, 7, 256, 1300, 3):
        out = runner(x[:n])
        assert out.shape == (n, CLASSES) and out.dtype == np.float32
        np.testing.assert_allclose(out, reference[:n], atol=1e-4)


@needs_tf
def test_the_quantization_aware_student_exports_to_litert_and_int8(qat_case):
    model, rows, record = qat_case
    float_, int8 = record["litert"], record["litert_int8"]
    assert 0.8 < float_["keras_accuracy"]
    assert float_["agreement"] >= 0.995, float_
    assert abs(int8["accuracy"] - int8["keras_accuracy"]) <= 0.005, int8
    assert int8["bytes"] < 0.5 * float_["bytes"]


# --------------------------------------------------------------------------- errors


@pytest.mark.backend
def test_a_bad_format_name_is_refused_up_front(tmp_path):
    model = models.mlp((4, 4, 1), CLASSES, hidden=(8,))
    for call in (
        lambda: ex.export(model, tmp_path / "m.tflite", "tflite"),
        lambda: ex.deploy_table(
            {"m": model}, tmp_path, np.zeros((2, 4, 4, 1)), [0, 1], formats=["keras", "coreml"]
        ),
        lambda: ex.load_runner(tmp_path / "m.keras", "pb"),
    ):
        with pytest.raises(
            ValueError, match="unknown export format .* choose one of keras, saved_model"
        ):
            call()
    assert not list(tmp_path.iterdir())  # nothing was written before the refusal
    for fmt in ex.CALIBRATED:
        with pytest.raises(ValueError, match=f"format '{fmt}' needs representative"):
            ex.export(model, ex.path_for(tmp_path, "m", fmt), fmt)
    with pytest.raises(ValueError, match="must end with '.tflite'"):
        ex.export(model, tmp_path / "m.lite", "litert")


@pytest.mark.backend
@pytest.mark.parametrize("fmt", ["saved_model", "litert", "litert_int8", "litert_int16x8"])
def test_tensorflow_formats_say_they_need_the_tensorflow_backend(tmp_path, monkeypatch, fmt):
    if TF:  # pretend; under KERAS_BACKEND=jax (make test's second pass) this is the real thing
        monkeypatch.setattr(keras.backend, "backend", lambda: "jax")
    model = models.mlp((4, 4, 1), CLASSES, hidden=(8,))
    path = ex.path_for(tmp_path, "m", fmt)
    with pytest.raises(
        RuntimeError, match="needs TensorFlow.*backend is 'jax'.*KERAS_BACKEND=tensorflow"
    ):
        ex.export(model, path, fmt, representative=np.zeros((4, 4, 4, 1), "float32"))
    with pytest.raises(RuntimeError, match="KERAS_BACKEND=tensorflow"):
        ex.deploy_table(
            {"m": model},
            tmp_path,
            np.zeros((2, 4, 4, 1)),
            [0, 1],
            np.zeros((2, 4, 4, 1)),
            formats=["keras", fmt],
        )
    assert not path.exists()
    ex.export(model, tmp_path / "m.keras", "keras")  # the .keras file needs no TensorFlow


@needs_tf
def test_a_jax_process_gets_the_error_and_still_runs_the_exported_files(mlp_case, tmp_path):
    """In a real KERAS_BACKEND=jax process: the TensorFlow formats are refused with the
    explanation, while the exported .keras, .tflite and .onnx files load and run."""
    _, xt, *_, record = mlp_case
    np.save(tmp_path / "x.npy", xt[:64])
    paths = {fmt: record[fmt]["path"] for fmt in ("keras", "litert", "onnx")}
    code = textwrap.dedent(f"""
        import keras, numpy as np
        from kdlib import export as ex
        assert keras.backend.backend() == "jax"
        x = np.load({str(tmp_path / "x.npy")!r})
        ref = ex.load_runner({paths["keras"]!r})(x)
        for path in ({paths["litert"]!r}, {paths["onnx"]!r}):
            assert np.abs(ex.load_runner(path)(x) - ref).max() < 1e-3, path
        try:
            model = keras.saving.load_model({paths["keras"]!r})
            ex.export(model, {str(tmp_path / "m.tflite")!r}, "litert")
        except RuntimeError as err:
            print("ERROR:", err)
    """)
    env = {**os.environ, "KERAS_BACKEND": "jax"}
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=120, env=env
    )
    assert out.returncode == 0, out.stderr[-3000:]
    assert "ERROR: exporting format 'litert' needs TensorFlow" in out.stdout, out.stdout
    assert "backend is 'jax'" in out.stdout and not (tmp_path / "m.tflite").exists()


@pytest.mark.backend
@pytest.mark.parametrize(
    "module, package, call",
    [
        ("tf2onnx", "tf2onnx", lambda m, d: ex.export(m, d / "m.onnx", "onnx")),
        ("onnxruntime", "onnxruntime", lambda m, d: ex.load_runner(d / "m.onnx")),
        (
            "ai_edge_litert.interpreter",
            "ai-edge-litert",
            lambda m, d: ex.load_runner(d / "m.tflite"),
        ),
    ],
)
def test_a_missing_package_is_named_with_the_deploy_extra(
    tmp_path, monkeypatch, module, package, call
):
    hint = r'pip install -e "\.\[deploy\]"'
    if (
        module == "tf2onnx" and not TF
    ):  # Keras exports ONNX through jax2onnx on JAX; not in the extra
        module, package, hint = "jax2onnx", "jax2onnx", "pip install jax2onnx"
    monkeypatch.setitem(sys.modules, module, None)  # `import module` now raises ImportError
    for name in ("m.onnx", "m.tflite"):
        (tmp_path / name).write_bytes(b"")
    with pytest.raises(ImportError, match=rf"needs the package '{package}'.*{hint}"):
        call(models.mlp((4, 4, 1), CLASSES, hidden=(8,)), tmp_path)


@pytest.mark.backend
def test_ship_measures_the_scaled_test_split_and_names_what_it_cannot_write(
    tmp_path, monkeypatch, capsys
):
    from kdlib.data import Splits

    shape = (8, 8, 1)
    x, y = _data(shape, 400, seed=4, noise=2.0)
    images = np.clip(x * 40 + 128, 0, 255).astype(np.uint8)  # stored as the datasets are
    sp = Splits((images[:300], y[:300]), (images[:10], y[:10]), (images[300:], y[300:]), None)
    keras.utils.set_random_seed(2)
    model = _fit(models.mlp(shape, CLASSES, hidden=(16,)), images[:300] / 255.0, y[:300], 2)
    wanted = ("keras", "litert_int8")
    rows, record = ex.ship({"m": model}, sp, formats=wanted, repeats=2, folder=tmp_path)
    printed = capsys.readouterr().out
    written = [f for f in wanted if f in ex.available_formats()]
    assert [r["format"] for r in rows] == written and list(record["m"]) == written
    assert ("litert_int8" in printed) == ("litert_int8" not in written)
    expected = float(
        np.mean(np.argmax(model.predict(sp.test[0] / 255.0, verbose=0), -1) == sp.test[1])
    )
    assert record["m"]["keras"]["accuracy"] == pytest.approx(expected)  # on [0, 1] images
    assert record["m"]["keras"]["n"] == len(sp.test[1])
    scratch = tmp_path / "tmp"
    scratch.mkdir()
    monkeypatch.setattr(tempfile, "tempdir", str(scratch))
    assert ex.ship({"m": model}, sp, formats=("keras",), repeats=1)[0]
    assert list(scratch.iterdir()) == []  # no folder given: the files went, once measured
    monkeypatch.setattr(ex, "available_formats", lambda: ())
    assert ex.ship({"m": model}, sp, formats=wanted) == ([], {})
    with pytest.raises(ValueError, match="unknown export format"):
        ex.ship({"m": model}, sp, formats=["coreml"])
