"""Ship the student alone, in the format you deploy, and check that the shipped file still
gives the Keras model's answers.

Why: after distillation the trained object is a ``Distiller`` that also holds the teacher(s);
saving it saves the teacher too (Keras issue 14387: "how do I save only the student?"). What
one deploys is the small model alone, as a ``.keras`` file, a TensorFlow SavedModel, a LiteRT
(``.tflite``) flat buffer, float32 or int8, or an ONNX file. Keras 3 already exports these
(``model.export(path, format=...)``) and LiteRT (``ai-edge-litert``) and ONNX Runtime run
them; this module is only the glue:

* :func:`student_of` picks the student out of a ``Distiller``;
* :func:`save_student` writes it as a ``.keras`` file without teacher and optimizer state;
* :func:`export` writes one format per call, :func:`load_runner` loads the file back in its
  own runtime as a callable ``float32 (N, H, W, C) -> logits (N, classes)``;
* :func:`compare` (agreement and accuracy against Keras), :func:`size_bytes` and
  :func:`latency_ms` measure it, :func:`deploy_table` does all of it, and :func:`ship` does
  it for a notebook's splits.

Formats (:data:`FORMATS`): ``"keras"``, ``"saved_model"``, ``"litert"`` (float32),
``"litert_int8"`` (post-training int8: weights and, where LiteRT has int8 kernels, activations;
calibrated on a representative sample of training images; the input and the logits stay
float32, so callers feed the same arrays), ``"litert_int16x8"`` (the same with int16
activations: int8 weights, so nearly int8's size, keeping the accuracy int8 loses where one
per-tensor activation scale serves channels of very different ranges, as after DenseNet's
concatenations and its pre-activation BatchNorm, which no convolution can absorb) and
``"onnx"``. ``saved_model`` and the ``litert`` formats are converted by TensorFlow and need the
TensorFlow backend; ``onnx`` uses tf2onnx on TensorFlow (Keras would use jax2onnx on JAX, which
the ``[deploy]`` extra does not install). The LiteRT files are limited to LiteRT's built-in
operators (no "Flex" TensorFlow ops), so they run on the plain LiteRT runtime, on a phone as
here.

Quantization-aware students (``kdlib.quant`` layers, e.g. notebook 05's
``svhn_cnn(..., weight_bits=4, activation_bits=4)``): their fake quantization is ordinary
TensorFlow arithmetic, not TensorFlow's ``FakeQuant`` ops, so the LiteRT converter does not
recognise it as quantization. It constant-folds each quantized kernel into a float32 constant
whose values lie on the k-bit grid (BatchNorm folded in; 15 distinct values per output
channel at 4 bits, still 4 bytes a weight in ``"litert"``), and it keeps the k-bit activation
quantization (``QuantReLU``) as float operators: ReLU and clip (fused into the convolution
where it can), ``MUL``, ``ROUND``, ``MUL``. ``"litert_int8"`` then stores those grid-valued
kernels as int8 with per-channel scales (the 15 values stay 15 distinct int8 values, each
moved by at most half an int8 step) and runs every activation rounding in float between
``DEQUANTIZE`` and ``QUANTIZE``; an int8 error just before a ``ROUND`` can move an activation
by a whole k-bit level, so the int8 file's top-1 class can differ from Keras's on images the
model is unsure about (the float ``"litert"`` file matches Keras). The int8 file is what makes
the student small on disk; k-bit storage
proper is not something LiteRT offers for these layers.
"""

from __future__ import annotations

import contextlib
import importlib
import logging
import os
import shutil
import tempfile
import time
import warnings
from collections.abc import Callable, Iterator, Mapping, Sequence
from pathlib import Path

import keras
import numpy as np

from kdlib import _quiet

FORMATS = ("keras", "saved_model", "litert", "litert_int8", "litert_int16x8", "onnx")
SUFFIXES = {
    "keras": ".keras",
    "saved_model": "",
    "litert": ".tflite",
    "litert_int8": ".int8.tflite",
    "litert_int16x8": ".int16x8.tflite",
    "onnx": ".onnx",
}
NEEDS_TENSORFLOW = ("saved_model", "litert", "litert_int8", "litert_int16x8")
CALIBRATED = ("litert_int8", "litert_int16x8")  # post-training quantization: needs calibration
DEPLOY_EXTRA = 'pip install -e ".[deploy]"'
BATCH = 1024  # runners feed at most this many images to their runtime at once

__all__ = [
    "FORMATS",
    "Runner",
    "available_formats",
    "check_format",
    "compare",
    "deploy_table",
    "export",
    "keras_logits",
    "latency_ms",
    "load_runner",
    "path_for",
    "quiet_native_logs",
    "save_student",
    "size_bytes",
    "student_of",
]


# --------------------------------------------------------------------------- checks


def student_of(model) -> keras.Model:
    """The student of a ``kdlib.distill.Distiller`` or a ``keras.distillation.Distiller``, or
    ``model`` itself if it is a Functional or Sequential model; a ValueError for anything else:
    a ``HintTrainer``, and any other model that holds models, since which of them is the
    student it cannot tell (exporting the whole would ship the teacher with it)."""
    from kdlib.distill import Distiller, HintTrainer

    if isinstance(model, (Distiller, keras.distillation.Distiller)):
        return model.student
    if isinstance(model, HintTrainer):
        raise ValueError(
            "a HintTrainer holds only the student's lower layers and a regressor: export the "
            "student model you passed to it (after stage 2, the Distiller's student)"
        )
    if not isinstance(model, keras.Model):
        raise ValueError(
            f"expected a keras.Model or a kdlib or Keras Distiller, got {type(model).__name__}"
        )
    if not _plain_graph(model):
        held = [layer.name for layer in model.layers if isinstance(layer, keras.Model)]
        raise ValueError(
            f"cannot take the {type(model).__name__} {model.name!r} apart: it is not a "
            f"Functional or Sequential model, and it holds the models {held}; export the "
            "student model itself"
        )
    return model


def _plain_graph(model: keras.Model) -> bool:
    """True for a Functional or Sequential model, or a subclassed one that holds no model
    (nothing in it can be a teacher)."""
    functional = any(c.__name__ in ("Functional", "Sequential") for c in type(model).__mro__)
    return functional or not any(isinstance(layer, keras.Model) for layer in model.layers)


def check_format(fmt: str) -> str:
    """Return ``fmt`` if it is one of :data:`FORMATS`; otherwise raise a clear ValueError."""
    if fmt not in FORMATS:
        raise ValueError(f"unknown export format {fmt!r}; choose one of {', '.join(FORMATS)}")
    return fmt


def _require(module: str, package: str, purpose: str, in_extra: bool = True):
    """Import ``module`` or raise an ImportError naming ``package`` and, if it is part of it,
    the ``[deploy]`` extra."""
    try:
        return importlib.import_module(module)
    except ImportError as err:
        how = (
            f"run {DEPLOY_EXTRA} in the course repository (or pip install {package})"
            if in_extra
            else f"pip install {package}"
        )
        raise ImportError(
            f"{purpose} needs the package {package!r}, which is not installed: {how}"
        ) from err


def _require_tensorflow(fmt: str, purpose: str = "exporting"):
    """TensorFlow, checked to be the Keras backend: the converters behind ``fmt`` need it."""
    backend = keras.backend.backend()
    if backend != "tensorflow":
        raise RuntimeError(
            f"{purpose} format {fmt!r} needs TensorFlow (its converter traces the model as a "
            f"TensorFlow graph), but the Keras backend is {backend!r}. Set "
            "KERAS_BACKEND=tensorflow before importing keras, or save with format='keras' "
            "here and export that file from a TensorFlow-backend process."
        )
    try:
        return importlib.import_module("tensorflow")
    except ImportError as err:
        raise RuntimeError(
            f"{purpose} format {fmt!r} needs TensorFlow, which cannot be imported: "
            f"pip install tensorflow ({err})"
        ) from err


def _check_exporter(fmt: str) -> None:
    """Raise before any work if the backend or a package that exporting ``fmt`` needs is missing."""
    if fmt in NEEDS_TENSORFLOW:
        _require_tensorflow(fmt)
    elif fmt == "onnx":
        if keras.backend.backend() == "tensorflow":
            _require("onnx", "onnx", "exporting to ONNX")
            _require("tf2onnx", "tf2onnx", "exporting to ONNX on the TensorFlow backend")
        elif keras.backend.backend() == "jax":
            _require(
                "jax2onnx",
                "jax2onnx",
                "exporting to ONNX on the JAX backend (or use KERAS_BACKEND=tensorflow)",
                in_extra=False,
            )
        else:
            raise RuntimeError(
                f"exporting to ONNX is set up for the TensorFlow and JAX backends, not "
                f"{keras.backend.backend()!r}"
            )


def available_formats() -> tuple[str, ...]:
    """The formats this set-up can export: all of :data:`FORMATS` on the TensorFlow backend
    with the ``[deploy]`` extra installed; ``"keras"`` (and ``"onnx"`` where jax2onnx is
    installed) on JAX. ONNX is left out under a mixed-precision policy, which Keras's ONNX
    export does not take."""
    found = []
    for fmt in FORMATS:
        try:
            if fmt != "keras":
                _check_exporter(fmt)
        except (ImportError, RuntimeError):
            continue
        if fmt == "onnx" and keras.config.dtype_policy().name != "float32":
            continue
        found.append(fmt)
    return tuple(found)


# --------------------------------------------------------------------------- quiet converters

_NOISY_LOGGERS = ("absl", "tensorflow", "tf2onnx", "h5py")


@contextlib.contextmanager
def quiet_native_logs(enabled: bool = True) -> Iterator[None]:
    """Hold back the routine log lines that TensorFlow's converters and LiteRT write to the
    process's stderr (``kdlib._quiet.CONVERTERS``) and their Python loggers' INFO/WARNING
    records; lines that look like errors, and everything else, are written out afterwards."""
    if not enabled:
        yield
        return
    levels = {name: logging.getLogger(name).level for name in _NOISY_LOGGERS}
    for name in _NOISY_LOGGERS:
        logging.getLogger(name).setLevel(logging.ERROR)
    try:
        with _quiet.filtered_stderr(_quiet.CONVERTERS), warnings.catch_warnings():
            warnings.filterwarnings("ignore", message=r".*np\.object.*", category=FutureWarning)
            yield
    finally:
        for name, level in levels.items():
            logging.getLogger(name).setLevel(level)


# --------------------------------------------------------------------------- export


def path_for(folder: str | os.PathLike, name: str, fmt: str) -> Path:
    """The conventional path of model ``name`` in format ``fmt`` inside ``folder``:
    ``name.keras``, ``name_saved_model/``, ``name.tflite``, ``name.int8.tflite``,
    ``name.int16x8.tflite``, ``name.onnx``."""
    check_format(fmt)
    if fmt == "saved_model":
        return Path(folder) / f"{name}_saved_model"
    return Path(folder) / f"{name}{SUFFIXES[fmt]}"


def _check_suffix(path: Path, fmt: str) -> None:
    suffix = ".tflite" if fmt.startswith("litert") else SUFFIXES[fmt]
    if suffix and not path.name.endswith(suffix):
        raise ValueError(f"a {fmt!r} file's name must end with {suffix!r}, got {path.name!r}")


def _check_target(path: Path, fmt: str) -> None:
    """Before any work: a file format's path is not a folder, a SavedModel's not a file."""
    if fmt == "saved_model" and path.exists() and not path.is_dir():
        raise ValueError(f"a SavedModel is a folder, but {path} is a file: choose another path")
    if fmt != "saved_model" and path.is_dir():
        raise ValueError(f"{path} is a folder: a {fmt!r} export is a file; choose another path")


def save_student(model, path: str | os.PathLike) -> Path:
    """Save the student (:func:`student_of`) alone as a ``.keras`` file: its architecture and
    weights, without any teacher weight and without optimizer state or compile settings.

    The student is rebuilt from its config and given the trained weights before saving, so
    nothing else the training attached to it travels with the file."""
    student = student_of(model)
    path = Path(path)
    _check_suffix(path, "keras")
    _check_target(path, "keras")
    try:
        copy = student.__class__.from_config(student.get_config())
    except (NotImplementedError, TypeError) as err:
        raise ValueError(
            f"the student {student.name!r} cannot be rebuilt from its config ({err}); make "
            "it a Functional or Sequential model, or give its class get_config/from_config"
        ) from err
    copy.set_weights(student.get_weights())
    path.parent.mkdir(parents=True, exist_ok=True)
    copy.save(path)
    return path


def _check_calibration(representative, student: keras.Model) -> np.ndarray:
    """The calibration images as float32, checked to be what ``student`` takes: its input
    shape, and floats as the model sees them. Integer pixels (``uint8`` 0..255) and floats
    holding whole numbers above 1 are refused: every kdlib model takes images scaled to
    [0, 1] (``kdlib.data.Batches`` scales them), and activation ranges calibrated on 0..255
    give an int8 file that is right on almost nothing."""
    raw = np.asarray(representative)
    if raw.ndim < 2 or len(raw) == 0:
        raise ValueError(
            "post-training quantization needs a representative sample of training images, "
            f"shape (N, H, W, C), got shape {raw.shape}"
        )
    expected = tuple(student.input_shape[1:]) if hasattr(student, "input_shape") else None
    if expected and any(e is not None and e != g for e, g in zip(expected, raw.shape[1:])):
        raise ValueError(
            f"representative images have shape {raw.shape[1:]} per sample, but the model takes "
            f"{expected}"
        )
    if not np.issubdtype(raw.dtype, np.floating):
        raise ValueError(
            f"representative images are {raw.dtype} ({raw.min()}..{raw.max()}): pass them "
            "scaled as the model's inputs, float32 in [0, 1] (e.g. x / 255, or a batch of "
            "kdlib.data.Batches)"
        )
    images = raw.astype("float32")
    if not np.all(np.isfinite(images)):
        raise ValueError("representative images contain NaN or infinite values")
    if images.max() > 1.0 and np.all(images == np.round(images)):
        raise ValueError(
            f"representative images hold whole numbers up to {images.max():g}: unscaled "
            "pixels. Pass them scaled as the model's inputs, float32 in [0, 1] (x / 255)"
        )
    return images


def _calibration(images: np.ndarray, max_samples: int) -> Callable[[], Iterator[list]]:
    """A LiteRT ``representative_dataset``: up to ``max_samples`` images, one per step."""
    images = images[:max_samples]

    def dataset():
        for image in images:
            yield [image[None]]

    return dataset


def export(
    model,
    path: str | os.PathLike,
    fmt: str,
    *,
    representative: np.ndarray | None = None,
    max_calibration: int = 200,
    quiet: bool = True,
) -> Path:
    """Export the student of ``model`` (:func:`student_of`) in format ``fmt`` to ``path``
    (a file; a folder for ``"saved_model"``, replaced if it exists) and return the path.

    ``"litert_int8"`` and ``"litert_int16x8"`` need ``representative``: training images
    (N, H, W, C), of which the
    first ``max_calibration`` calibrate the activation ranges. ``quiet`` holds back the
    converters' routine log lines (:func:`quiet_native_logs`); errors still show.

    LiteRT files may use LiteRT's built-in operators only: a model that needs TensorFlow
    ("Flex") operators fails here with the converter's message naming them, rather than
    producing a file the plain LiteRT runtime cannot run."""
    check_format(fmt)
    student = student_of(model)
    path = Path(path)
    _check_suffix(path, fmt)
    _check_target(path, fmt)
    if fmt in CALIBRATED:
        if representative is None:
            raise ValueError(f"format {fmt!r} needs representative=<a sample of training images>")
        representative = _check_calibration(representative, student)
    if fmt == "keras":
        return save_student(student, path)
    _check_exporter(fmt)
    path.parent.mkdir(parents=True, exist_ok=True)
    if fmt == "saved_model" and path.exists():
        shutil.rmtree(path)
    kwargs: dict = {}
    if fmt.startswith("litert"):
        tf = _require_tensorflow(fmt)
        ops = tf.lite.OpsSet.TFLITE_BUILTINS
        if fmt == "litert_int16x8":
            ops = tf.lite.OpsSet.EXPERIMENTAL_TFLITE_BUILTINS_ACTIVATIONS_INT16_WEIGHTS_INT8
        kwargs["target_spec"] = {"supported_ops": [ops]}
        if fmt in CALIBRATED:
            kwargs["optimizations"] = [tf.lite.Optimize.DEFAULT]
            kwargs["representative_dataset"] = _calibration(representative, max_calibration)
    keras_format = {
        "saved_model": "tf_saved_model",
        "litert": "litert",
        "litert_int8": "litert",
        "litert_int16x8": "litert",
        "onnx": "onnx",
    }[fmt]
    with quiet_native_logs(quiet):
        student.export(str(path), format=keras_format, verbose=False, **kwargs)
    return path


# --------------------------------------------------------------------------- runners


def _format_of(path: Path) -> str:
    """The format of an exported file or folder, from its name."""
    if path.is_dir():
        return "saved_model"
    name = path.name
    for fmt in CALIBRATED:
        if name.endswith(SUFFIXES[fmt]):
            return fmt
    for fmt in ("keras", "litert", "onnx"):
        if name.endswith(SUFFIXES[fmt]):
            return fmt
    raise ValueError(
        f"cannot tell the format of {str(path)!r}: expected .keras, .tflite, .onnx or a "
        "SavedModel folder"
    )


class Runner:
    """An exported model loaded in its own runtime: ``runner(images)`` takes a float32 batch
    (N, H, W, C) of any N and returns the logits (N, classes) as float32 NumPy."""

    def __init__(self, path: Path, fmt: str):
        self.path = path
        self.format = fmt

    def __repr__(self) -> str:
        return f"<{type(self).__name__} {self.format} {str(self.path)!r}>"

    def _run(self, batch: np.ndarray) -> np.ndarray:
        raise NotImplementedError

    def __call__(self, images) -> np.ndarray:
        images = np.ascontiguousarray(images, dtype="float32")
        if images.ndim < 2 or len(images) == 0:
            raise ValueError(
                f"expected a batch of images (N, H, W, C) with N >= 1, got shape {images.shape}"
            )
        outputs = [self._run(images[i : i + BATCH]) for i in range(0, len(images), BATCH)]
        return np.concatenate(outputs).astype("float32", copy=False)


class _KerasRunner(Runner):
    def __init__(self, path: Path, fmt: str):
        super().__init__(path, fmt)
        self.model = keras.saving.load_model(path, compile=False)

    def _run(self, batch):
        return np.asarray(self.model.predict_on_batch(batch))


class _SavedModelRunner(Runner):
    def __init__(self, path: Path, fmt: str):
        super().__init__(path, fmt)
        try:
            import tensorflow as tf
        except ImportError as err:
            raise RuntimeError(
                "loading a SavedModel needs TensorFlow, which cannot be imported: "
                f"pip install tensorflow ({err})"
            ) from err
        self._tf = tf
        self.model = tf.saved_model.load(str(path))

    def _run(self, batch):
        return np.asarray(self.model.serve(self._tf.constant(batch)))


class _LiteRTRunner(Runner):
    def __init__(self, path: Path, fmt: str, num_threads: int | None = None):
        super().__init__(path, fmt)
        litert = _require("ai_edge_litert.interpreter", "ai-edge-litert", "running a .tflite file")
        with quiet_native_logs():
            self.interpreter = litert.Interpreter(model_path=str(path), num_threads=num_threads)
            self.interpreter.allocate_tensors()
        (inp,), (out,) = self.interpreter.get_input_details(), self.interpreter.get_output_details()
        if inp["dtype"] != np.float32:
            raise ValueError(
                f"{path.name} takes {np.dtype(inp['dtype']).name} input; these runners feed float32"
            )
        self._input, self._output = inp["index"], out["index"]
        self._shape = tuple(inp["shape"])

    def _run(self, batch):
        if batch.shape != self._shape:  # e.g. batch size: resize the input, re-plan the memory
            with quiet_native_logs():
                self.interpreter.resize_tensor_input(self._input, batch.shape)
                self.interpreter.allocate_tensors()
            self._shape = batch.shape
        self.interpreter.set_tensor(self._input, batch)
        self.interpreter.invoke()
        return self.interpreter.get_tensor(self._output).copy()


class _OnnxRunner(Runner):
    def __init__(self, path: Path, fmt: str, num_threads: int | None = None):
        super().__init__(path, fmt)
        ort = _require("onnxruntime", "onnxruntime", "running an .onnx file")
        options = ort.SessionOptions()
        if num_threads:
            options.intra_op_num_threads = num_threads
        self.session = ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
        self._input = self.session.get_inputs()[0].name

    def _run(self, batch):
        return self.session.run(None, {self._input: batch})[0]


def load_runner(
    path: str | os.PathLike, fmt: str | None = None, *, num_threads: int | None = None
) -> Runner:
    """Load an exported file (or SavedModel folder) in its own runtime: Keras for ``.keras``,
    TensorFlow for a SavedModel, LiteRT's ``Interpreter`` for ``.tflite``, ONNX Runtime for
    ``.onnx``. ``fmt`` defaults to what the name says; ``num_threads`` is for LiteRT and ONNX
    Runtime (default: theirs)."""
    path = Path(path)
    fmt = check_format(fmt) if fmt else _format_of(path)
    if not path.exists():
        raise FileNotFoundError(f"no exported model at {str(path)!r}")
    runner = {"keras": _KerasRunner, "saved_model": _SavedModelRunner}.get(fmt)
    try:
        if runner is not None:
            return runner(path, fmt)
        if fmt.startswith("litert"):
            return _LiteRTRunner(path, fmt, num_threads)
        return _OnnxRunner(path, fmt, num_threads)
    except (OSError, ValueError) as e:  # a truncated or foreign file: say which (a missing
        # runtime is an ImportError or RuntimeError whose own message says what to install)
        raise _unreadable_export(path, fmt, e) from e


def _unreadable_export(path: Path, fmt: str, e: Exception) -> ValueError:
    return ValueError(
        f"{path} is not a readable {fmt!r} export ({type(e).__name__}: {e}); export the model "
        "again (kdlib.export.export)"
    )


# --------------------------------------------------------------------------- measurements


def keras_logits(model, images: np.ndarray) -> np.ndarray:
    """The Keras student's logits on ``images`` (inference mode), float32."""
    student = student_of(model)
    return np.asarray(
        student.predict(np.asarray(images, "float32"), batch_size=BATCH, verbose=0), dtype="float32"
    )


def compare(
    runner: Runner | str | os.PathLike,
    model,
    images: np.ndarray,
    labels: np.ndarray,
    *,
    reference: np.ndarray | None = None,
) -> dict:
    """Check an exported model (a :class:`Runner` or a path) against the Keras student on
    ``images``/``labels``: ``agreement`` (fraction of images whose top-1 class is the Keras
    model's), ``accuracy`` (of the exported file), ``keras_accuracy``, ``max_abs_diff`` of the
    logits and ``n``. ``reference``: the Keras logits, if already computed."""
    runner = runner if isinstance(runner, Runner) else load_runner(runner)
    labels = np.asarray(labels).reshape(-1)
    if len(images) != len(labels):
        raise ValueError(f"{len(images)} images for {len(labels)} labels")
    ours = runner(images)
    ref = keras_logits(model, images) if reference is None else np.asarray(reference, "float32")
    top, ref_top = ours.argmax(-1), ref.argmax(-1)
    return {
        "agreement": float(np.mean(top == ref_top)),
        "accuracy": float(np.mean(top == labels)),
        "keras_accuracy": float(np.mean(ref_top == labels)),
        "max_abs_diff": float(np.max(np.abs(ours - ref))),
        "n": int(len(labels)),
    }


def size_bytes(path: str | os.PathLike) -> int:
    """Bytes on disk of an exported file, or of every file in a SavedModel folder."""
    path = Path(path)
    if path.is_dir():
        return sum(p.stat().st_size for p in path.rglob("*") if p.is_file())
    return path.stat().st_size


def latency_ms(
    runner: Callable[[np.ndarray], np.ndarray],
    images: np.ndarray,
    batch_size: int = 1,
    *,
    repeats: int = 20,
    warmup: int = 3,
) -> dict:
    """Milliseconds per call of ``runner`` on one batch of ``batch_size`` images (the first
    ones, repeated if there are fewer): ``median``, ``min`` and ``max`` over ``repeats`` calls
    after ``warmup`` calls, on this machine."""
    images = np.asarray(images, dtype="float32")
    if repeats < 1 or batch_size < 1 or len(images) == 0:
        raise ValueError("latency_ms needs repeats >= 1, batch_size >= 1 and at least one image")
    reps = -(-batch_size // len(images))
    batch = np.ascontiguousarray(
        np.concatenate([images] * reps)[:batch_size] if reps > 1 else images[:batch_size]
    )
    for _ in range(warmup):
        runner(batch)
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        runner(batch)
        times.append(1000 * (time.perf_counter() - start))
    return {
        "median": float(np.median(times)),
        "min": float(np.min(times)),
        "max": float(np.max(times)),
    }


def _ms(t: dict) -> str:
    """``"median (min–max)"`` milliseconds, for a table cell."""
    digits = 3 if t["median"] < 1 else 2 if t["median"] < 10 else 1
    return f"{t['median']:.{digits}f} ({t['min']:.{digits}f}–{t['max']:.{digits}f})"


def deploy_table(
    models: Mapping[str, keras.Model],
    folder: str | os.PathLike,
    images: np.ndarray,
    labels: np.ndarray,
    representative: np.ndarray | None = None,
    *,
    formats: Sequence[str] = FORMATS,
    batch_sizes: Sequence[int] = (1, 256),
    repeats: int = 20,
    warmup: int = 3,
    num_threads: int | None = None,
) -> tuple[list[dict], dict]:
    """Export every model of ``{"name": model_or_distiller}`` to every format into ``folder``,
    load each file back in its own runtime and measure it on the test ``images``/``labels``.

    Returns ``(rows, record)``: one row per model and format with ``model``, ``format``,
    ``bytes``, ``accuracy`` (measured from the exported file), ``agreement`` (top-1 agreement
    with Keras) and one ``batch N ms`` cell per batch size, ``"median (min–max)"``
    milliseconds per call (ready for ``kdlib.results.Table(rows)``); and the same numbers as
    ``{name: {format: {...}}}`` for a JSON record. ``representative`` (training images) is
    needed for ``"litert_int8"`` and ``"litert_int16x8"``."""
    formats = [check_format(f) for f in formats]
    calibrated = [f for f in formats if f in CALIBRATED]
    if calibrated and representative is None:
        raise ValueError(
            f"format {calibrated[0]!r} needs representative=<a sample of training images>"
        )
    for fmt in formats:  # fail before the first export, not half way through
        if fmt != "keras":
            _check_exporter(fmt)
    images = np.asarray(images, dtype="float32")
    rows, record = [], {}
    for name, model in models.items():
        student = student_of(model)
        reference = keras_logits(student, images)
        record[name] = {}
        for fmt in formats:
            path = export(student, path_for(folder, name, fmt), fmt, representative=representative)
            runner = load_runner(path, fmt, num_threads=num_threads)
            check = compare(runner, student, images, labels, reference=reference)
            latency = {
                f"batch_{b}": latency_ms(runner, images, b, repeats=repeats, warmup=warmup)
                for b in batch_sizes
            }
            entry = {"file": path.name, "bytes": size_bytes(path), **check, "latency_ms": latency}
            record[name][fmt] = entry
            row = {
                "model": name,
                "format": fmt,
                "bytes": f"{entry['bytes']:,}",
                "accuracy": f"{check['accuracy']:.4f}",
                "agreement": f"{check['agreement']:.4f}",
            }
            row.update({f"batch {b} ms": _ms(latency[f"batch_{b}"]) for b in batch_sizes})
            rows.append(row)
    return rows, record


def ship(
    models: Mapping[str, keras.Model],
    splits,
    *,
    formats: Sequence[str],
    repeats: int = 20,
    calibration_images: int = 200,
    folder: str | os.PathLike | None = None,
) -> tuple[list[dict], dict]:
    """:func:`deploy_table` for a notebook: the models of ``{"name": model}`` shipped in every
    format of ``formats`` this set-up can write (the others are named in one printed line, not
    silently dropped), measured on the whole test split of ``splits`` (a
    ``kdlib.data.Splits``), scaled as in training, and calibrated on its first
    ``calibration_images`` training images. Files go to ``folder``, by default a temporary
    folder removed once they are measured. Returns ``(rows, record)`` as
    :func:`deploy_table`; both empty when no format can be written here."""
    from kdlib import data

    formats = [check_format(f) for f in formats]
    available = available_formats()
    missing = [f for f in formats if f not in available]
    if missing:
        print(
            f"not exported on this set-up ({keras.backend.backend()} backend): {', '.join(missing)}"
        )
    formats = [f for f in formats if f in available]
    if not formats:
        return [], {}
    (train_x, train_y), (test_x, test_y) = splits.train, splits.test
    images, labels = data.Batches(test_x, test_y, len(test_y))[0]
    calibration = data.Batches(train_x, train_y, calibration_images)[0][0]
    if folder is not None:
        return deploy_table(
            models, folder, images, labels, calibration, formats=formats, repeats=repeats
        )
    with tempfile.TemporaryDirectory(prefix="kdlib-ship-") as tmp:  # removed once measured
        return deploy_table(
            models, tmp, images, labels, calibration, formats=formats, repeats=repeats
        )
