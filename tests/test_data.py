"""kdlib.data: tiny files in each real format, the checks, the real datasets, splits, batches and
augmentation."""

import gzip
import hashlib
import io
import os
import pickle
import tarfile
from pathlib import Path

import keras
import numpy as np
import pytest
import scipy.io

from kdlib import data
from kdlib.data import files

rng = np.random.default_rng(0)
REAL_DATA_DIR = os.environ.get("KDLIB_DATA_DIR")  # read before the fixture below hides it


@pytest.fixture(autouse=True)
def isolated(tmp_path, monkeypatch):
    """No real dataset, no Keras cache, no network: only what each test writes."""
    monkeypatch.delenv("KDLIB_DATA_DIR", raising=False)
    monkeypatch.setenv("KERAS_HOME", str(tmp_path / "keras_home"))
    monkeypatch.setenv("KDLIB_CACHE_DIR", str(tmp_path / "kdlib_cache"))
    monkeypatch.setattr(files, "SYSTEM_DIRS", {})

    def offline(name):
        raise OSError("network is unreachable (test)")

    monkeypatch.setattr(files, "_download", offline)


def _checksums(monkeypatch, name, sums: dict):
    monkeypatch.setitem(files.CHECKSUMS, name, {**files.CHECKSUMS[name], **sums})


def _md5(b: bytes) -> str:
    return hashlib.md5(b).hexdigest()


def _idx(array: np.ndarray) -> bytes:
    magic = 0x0800 | array.ndim
    header = magic.to_bytes(4, "big") + b"".join(int(d).to_bytes(4, "big") for d in array.shape)
    return header + array.astype(np.uint8).tobytes()


def write_idx_set(folder: Path, n_train=20, n_test=10):
    folder.mkdir(parents=True, exist_ok=True)
    arrays = {
        "train-images-idx3-ubyte.gz": rng.integers(0, 256, (n_train, 28, 28)),
        "train-labels-idx1-ubyte.gz": np.arange(n_train) % 10,
        "t10k-images-idx3-ubyte.gz": rng.integers(0, 256, (n_test, 28, 28)),
        "t10k-labels-idx1-ubyte.gz": np.arange(n_test)[::-1] % 10,
    }
    sums = {}
    for name, a in arrays.items():
        raw = _idx(a)
        (folder / name).write_bytes(gzip.compress(raw))
        sums[name] = _md5(raw)
    return arrays, sums


@pytest.mark.parametrize("name,subfolder", [("mnist", "mnist"), ("fashion_mnist", "fashion-mnist")])
def test_idx_gz_files_parse(tmp_path, monkeypatch, name, subfolder):
    arrays, sums = write_idx_set(tmp_path / subfolder)
    _checksums(monkeypatch, name, sums)
    ds = data.load(name, data_dir=tmp_path)
    (x, y), (xt, yt) = ds
    assert x.shape == (20, 28, 28, 1) and x.dtype == np.uint8
    assert xt.shape == (10, 28, 28, 1) and y.dtype == np.int64 and yt.dtype == np.int64
    np.testing.assert_array_equal(x[..., 0], arrays["train-images-idx3-ubyte.gz"])
    np.testing.assert_array_equal(yt, arrays["t10k-labels-idx1-ubyte.gz"])
    assert ds.name == name and not ds.is_standin and len(ds.class_names) == 10
    assert Path(ds.source) == tmp_path / subfolder


def test_idx_checksum_is_of_the_decompressed_content(tmp_path, monkeypatch):
    """Re-compressing (as Debian did for Fashion-MNIST) changes the .gz bytes, not the data."""
    arrays, sums = write_idx_set(tmp_path / "fashion-mnist")
    _checksums(monkeypatch, "fashion_mnist", sums)
    f = tmp_path / "fashion-mnist" / "train-images-idx3-ubyte.gz"
    f.write_bytes(gzip.compress(gzip.decompress(f.read_bytes()), compresslevel=1, mtime=12345))
    (x, _), _ = data.load("fashion_mnist", data_dir=tmp_path)
    np.testing.assert_array_equal(x[..., 0], arrays["train-images-idx3-ubyte.gz"])


def _write_npz(folder: Path, monkeypatch) -> Path:
    buf = io.BytesIO()
    x = rng.integers(0, 256, (12, 28, 28)).astype(np.uint8)
    np.savez(
        buf,
        x_train=x,
        y_train=np.arange(12) % 10,
        x_test=x[:4],
        y_test=np.arange(4, dtype=np.uint8),
    )
    (folder / "mnist.npz").write_bytes(buf.getvalue())
    _checksums(monkeypatch, "mnist", {"mnist.npz": hashlib.sha256(buf.getvalue()).hexdigest()})
    return folder / "mnist.npz"


def test_mnist_npz_loads_without_pickle(tmp_path, monkeypatch):
    f = _write_npz(tmp_path, monkeypatch)
    with np.load(f) as raw:
        x = raw["x_train"]
    (xtr, ytr), (xte, yte) = data.load("mnist", data_dir=tmp_path)
    assert xtr.shape == (12, 28, 28, 1) and ytr.dtype == np.int64 and xte.shape == (4, 28, 28, 1)
    np.testing.assert_array_equal(xtr[..., 0], x)


def _cifar_batch(n, seed):
    r = np.random.default_rng(seed)
    images = r.integers(0, 256, (n, 3, 32, 32)).astype(np.uint8)
    labels = list(r.integers(0, 10, n))
    blob = pickle.dumps(
        {b"data": images.reshape(n, -1), b"labels": [int(v) for v in labels]}, protocol=2
    )
    return images, labels, blob


def write_cifar(folder: Path, monkeypatch):
    folder.mkdir(parents=True, exist_ok=True)
    sums, batches = {}, {}
    for i, name in enumerate([f"data_batch_{k}" for k in range(1, 6)] + ["test_batch"]):
        images, labels, blob = _cifar_batch(3, i)
        (folder / name).write_bytes(blob)
        sums[name] = _md5(blob)
        batches[name] = (images, labels)
    _checksums(monkeypatch, "cifar10", sums)
    return batches


def test_cifar_batches_parse_to_nhwc(tmp_path, monkeypatch):
    batches = write_cifar(tmp_path / "cifar-10-batches-py", monkeypatch)
    ds = data.load("cifar10", data_dir=tmp_path)
    (x, y), (xt, yt) = ds
    assert x.shape == (15, 32, 32, 3) and xt.shape == (3, 32, 32, 3) and x.dtype == np.uint8
    np.testing.assert_array_equal(x[3:6], batches["data_batch_2"][0].transpose(0, 2, 3, 1))
    np.testing.assert_array_equal(yt, batches["test_batch"][1])
    assert ds.class_names[0] == "airplane"


def test_cifar_archive_is_verified_and_extracted(tmp_path, monkeypatch):
    src = tmp_path / "src" / "cifar-10-batches-py"
    batches = write_cifar(src, monkeypatch)
    archive = tmp_path / "data" / "cifar-10-python.tar.gz"
    archive.parent.mkdir()
    with tarfile.open(archive, "w:gz") as tar:
        tar.add(src, arcname="cifar-10-batches-py")
    _checksums(monkeypatch, "cifar10", {"cifar-10-python.tar.gz": _md5(archive.read_bytes())})
    (x, _), _ = data.load("cifar10", data_dir=tmp_path / "data")
    np.testing.assert_array_equal(x[:3], batches["data_batch_1"][0].transpose(0, 2, 3, 1))
    assert (files.keras_cache() / "cifar-10-batches-py" / "test_batch").is_file()


def test_cifar_pickle_with_code_is_refused_even_with_a_matching_checksum(tmp_path, monkeypatch):
    folder = tmp_path / "cifar-10-batches-py"
    write_cifar(folder, monkeypatch)
    evil = pickle.dumps(os.getcwd)  # a callable: the restricted unpickler must refuse it
    (folder / "data_batch_1").write_bytes(evil)
    _checksums(monkeypatch, "cifar10", {"data_batch_1": _md5(evil)})
    with pytest.raises(pickle.UnpicklingError, match="refusing"):
        data.load("cifar10", data_dir=tmp_path)


def test_svhn_mat_files_parse_and_map_10_to_0(tmp_path, monkeypatch):
    folder = tmp_path / "svhn"
    folder.mkdir()
    sums = {}
    for name, n in (("train_32x32.mat", 6), ("test_32x32.mat", 4)):
        x = rng.integers(0, 256, (32, 32, 3, n)).astype(np.uint8)
        y = (np.arange(n) % 10 + 1).reshape(-1, 1).astype(np.uint8)  # labels 1..10
        scipy.io.savemat(folder / name, {"X": x, "y": y})
        sums[name] = _md5((folder / name).read_bytes())
    _checksums(monkeypatch, "svhn", sums)
    (xtr, ytr), (xte, yte) = data.load("svhn", data_dir=tmp_path)
    assert xtr.shape == (6, 32, 32, 3) and xte.shape == (4, 32, 32, 3) and ytr.dtype == np.int64
    np.testing.assert_array_equal(ytr, [1, 2, 3, 4, 5, 6])
    raw = scipy.io.loadmat(folder / "test_32x32.mat")
    np.testing.assert_array_equal(xte[2], raw["X"][..., 2])
    assert 10 not in ytr and set(range(1, 6)) <= set(ytr.tolist())


def test_svhn_label_10_means_digit_0(tmp_path, monkeypatch):
    folder = tmp_path / "svhn"
    folder.mkdir()
    sums = {}
    for name in ("train_32x32.mat", "test_32x32.mat"):
        scipy.io.savemat(
            folder / name,
            {"X": np.zeros((32, 32, 3, 2), np.uint8), "y": np.array([[10], [3]], np.uint8)},
        )
        sums[name] = _md5((folder / name).read_bytes())
    _checksums(monkeypatch, "svhn", sums)
    (_, y), _ = data.load("svhn", data_dir=tmp_path)
    np.testing.assert_array_equal(y, [0, 3])


def test_checksum_mismatch_names_the_file_and_both_checksums(tmp_path, monkeypatch):
    _, sums = write_idx_set(tmp_path / "mnist")
    wrong = dict(sums, **{"t10k-labels-idx1-ubyte.gz": "0" * 32})
    _checksums(monkeypatch, "mnist", wrong)
    with pytest.raises(data.ChecksumError) as err:
        data.load("mnist", data_dir=tmp_path)
    message = str(err.value)
    assert (
        "t10k-labels-idx1-ubyte.gz" in message
        and "0" * 32 in message
        and sums["t10k-labels-idx1-ubyte.gz"] in message
    )


def test_truncated_gzip_is_a_clear_error(tmp_path, monkeypatch):
    _, sums = write_idx_set(tmp_path / "mnist")
    _checksums(monkeypatch, "mnist", sums)
    f = tmp_path / "mnist" / "train-images-idx3-ubyte.gz"
    f.write_bytes(f.read_bytes()[:100])
    with pytest.raises(
        data.DatasetFormatError, match="train-images-idx3-ubyte.gz: not a complete gzip file"
    ):
        data.load("mnist", data_dir=tmp_path)


def test_truncated_mat_file_fails_its_checksum(tmp_path, monkeypatch):
    folder = tmp_path / "svhn"
    folder.mkdir()
    for name in ("train_32x32.mat", "test_32x32.mat"):
        scipy.io.savemat(
            folder / name, {"X": np.zeros((32, 32, 3, 2), np.uint8), "y": np.ones((2, 1), np.uint8)}
        )
    _checksums(
        monkeypatch,
        "svhn",
        {n: _md5((folder / n).read_bytes()) for n in ("train_32x32.mat", "test_32x32.mat")},
    )
    (folder / "test_32x32.mat").write_bytes((folder / "test_32x32.mat").read_bytes()[:50])
    with pytest.raises(data.ChecksumError, match="test_32x32.mat"):
        data.load("svhn", data_dir=tmp_path)


def test_offline_and_absent_names_every_place_and_the_fix(tmp_path, monkeypatch):
    monkeypatch.setenv("KDLIB_DATA_DIR", str(tmp_path / "shared"))
    (tmp_path / "mine").mkdir()  # an explicit data_dir must exist (one that does not is refused)
    with pytest.raises(data.DatasetNotFoundError) as err:
        data.load("cifar10", data_dir=tmp_path / "mine")
    message = str(err.value)
    for expected in (
        "'cifar10' was not found",
        str(tmp_path / "mine"),
        str(tmp_path / "shared"),
        str(tmp_path / "keras_home" / "datasets"),
        "download from https://www.cs.toronto.edu",
        "network is unreachable",
        "KDLIB_DATA_DIR",
    ):
        assert expected in message
    with pytest.raises(data.DatasetNotFoundError, match="not tried"):
        data.load("svhn", download=False)


def test_partial_dataset_is_reported(tmp_path, monkeypatch):
    _, sums = write_idx_set(tmp_path / "mnist")
    _checksums(monkeypatch, "mnist", sums)
    (tmp_path / "mnist" / "t10k-images-idx3-ubyte.gz").unlink()
    with pytest.raises(data.DatasetNotFoundError, match="missing t10k-images-idx3-ubyte.gz"):
        data.load("mnist", data_dir=tmp_path)


def test_standin_is_announced_and_named(tmp_path, monkeypatch, capsys):
    _, sums = write_idx_set(tmp_path / "fashion-mnist")
    _checksums(monkeypatch, "fashion_mnist", sums)
    ds = data.load("cifar10", data_dir=tmp_path, standin="fashion_mnist")
    assert ds.name == "fashion_mnist" and ds.requested == "cifar10" and ds.is_standin
    assert ds.class_names[0] == "T-shirt/top"
    banner = capsys.readouterr().out
    assert "STAND-IN DATA" in banner and "CIFAR-10 is not available" in banner
    assert "Fashion-MNIST (stand-in for CIFAR-10)" in ds.describe() and ds.label.startswith(
        "Fashion"
    )
    with pytest.raises(data.DatasetNotFoundError):
        data.load("cifar10", data_dir=tmp_path)  # no stand-in unless asked for


def test_standin_is_not_used_when_the_file_is_corrupt(tmp_path, monkeypatch):
    write_cifar(tmp_path / "cifar-10-batches-py", monkeypatch)
    _checksums(monkeypatch, "cifar10", {"test_batch": "1" * 32})
    _, sums = write_idx_set(tmp_path / "fashion-mnist")
    _checksums(monkeypatch, "fashion_mnist", sums)
    with pytest.raises(data.ChecksumError):
        data.load("cifar10", data_dir=tmp_path, standin="fashion_mnist")


def test_unknown_dataset_is_rejected():
    with pytest.raises(ValueError, match="unknown dataset 'cifar100'"):
        data.load("cifar100")


def _verified_then_counted(tmp_path, monkeypatch) -> list:
    """An MNIST set loaded once (verified and remembered); returns the list that each later
    hash appends to."""
    _, sums = write_idx_set(tmp_path / "mnist")
    _checksums(monkeypatch, "mnist", sums)
    data.load("mnist", data_dir=tmp_path)
    calls = []
    real = files._digest
    monkeypatch.setattr(files, "_digest", lambda b, e: calls.append(1) or real(b, e))
    return calls


def test_verified_files_are_not_hashed_again(tmp_path, monkeypatch):
    calls = _verified_then_counted(tmp_path, monkeypatch)
    data.load("mnist", data_dir=tmp_path)
    assert calls == []
    f = tmp_path / "mnist" / "train-labels-idx1-ubyte.gz"
    os.utime(f, ns=(1, 1))  # a changed file is hashed again
    data.load("mnist", data_dir=tmp_path)
    assert calls == [1]


def test_a_file_rewritten_with_its_size_and_time_kept_is_hashed_again(tmp_path, monkeypatch):
    f = _write_npz(tmp_path, monkeypatch)
    data.load("mnist", data_dir=tmp_path)  # verified and remembered
    st = f.stat()
    raw = bytearray(f.read_bytes())
    raw[-30] ^= 0xFF  # one byte changed: the same size
    f.write_bytes(bytes(raw))
    os.utime(f, ns=(st.st_atime_ns, st.st_mtime_ns))  # and the modification time put back
    assert f.stat().st_size == st.st_size and f.stat().st_mtime_ns == st.st_mtime_ns
    with pytest.raises(data.ChecksumError, match="mnist.npz"):
        data.load("mnist", data_dir=tmp_path)


def test_reverify_hashes_every_file_again(tmp_path, monkeypatch):
    calls = _verified_then_counted(tmp_path, monkeypatch)
    monkeypatch.setenv("KDLIB_REVERIFY", "1")
    data.load("mnist", data_dir=tmp_path)
    assert len(calls) == 4


def test_an_unreadable_file_is_reported_as_such_not_as_corrupt(tmp_path, monkeypatch):
    _, sums = write_idx_set(tmp_path / "mnist")
    _checksums(monkeypatch, "mnist", sums)

    def denied(*args, **kwargs):
        raise PermissionError(13, "Permission denied")

    monkeypatch.setattr(files.gzip, "open", denied)
    with pytest.raises(PermissionError, match="cannot read it.*permissions.*do not delete") as err:
        data.load("mnist", data_dir=tmp_path)
    assert "not a complete gzip" not in str(err.value)


# --------------------------------------------------------------------------- splits


def test_subset_and_validation_split_are_stratified_and_disjoint():
    y = np.repeat(np.arange(10), [100, 50, 80, 120, 90, 110, 100, 70, 130, 150])
    x = np.arange(len(y))
    xs, ys = data.subset(x, y, 200, seed=1)
    counts = np.bincount(ys, minlength=10)
    np.testing.assert_allclose(counts, np.bincount(y) * 200 / len(y), atol=1)
    assert len(set(xs)) == 200 and np.array_equal(y[xs], ys)
    (xt, yt), (xv, yv) = data.split_validation(x, y, 100, seed=2)
    assert len(xv) == 100 and len(xt) == len(y) - 100 and not set(xt) & set(xv)
    np.testing.assert_allclose(np.bincount(yv, minlength=10), np.bincount(y) / 10, atol=1)
    (xt2, _), _ = data.split_validation(x, y, 100, seed=2)
    np.testing.assert_array_equal(xt, xt2)
    with pytest.raises(ValueError, match="n must be in 1..1000"):
        data.subset(x, y, 2000)


def _toy_dataset(n=1000):
    y = np.arange(n) % 10
    return data.Dataset(
        (np.zeros((n, 4, 4, 1), np.uint8), y),
        (np.zeros((10, 4, 4, 1), np.uint8), y[:10]),
        name="mnist",
    )


def test_splits_never_train_on_fewer_images_than_asked():
    ds = _toy_dataset()
    assert len(data.splits(ds, 100, 900).train[1]) == 900
    assert len(data.splits(ds, 100, None).train[1]) == 900
    with pytest.raises(
        ValueError,
        match=r"n_train \(only 10 of mnist's 1,000 training images remain after n_val=990\) "
        r"must be in 1..10, got 500",
    ):
        data.splits(ds, 990, 500)
    with pytest.raises(ValueError, match="the validation size must be in 1..999, got 1000"):
        data.split_validation(*ds[0], 1000)
    with pytest.raises(ValueError, match="n_val must be a whole number"):
        data.splits(ds, 2.5, 10)


# --------------------------------------------------------------------------- batches


def test_batches_shapes_dtypes_and_scaling():
    x = rng.integers(0, 256, (10, 28, 28, 1)).astype(np.uint8)
    y = np.arange(10)
    batches = list(data.Batches(x, y, 4))
    assert [b[0].shape for b in batches] == [(4, 28, 28, 1), (4, 28, 28, 1), (2, 28, 28, 1)]
    assert batches[0][0].dtype == np.float32 and batches[0][1].dtype == np.int64
    np.testing.assert_allclose(batches[0][0], x[:4] / 255.0, rtol=1e-6)
    wide = data.Batches(x.astype(np.int32), y, 4)  # any integer pixels are scaled, not only uint8
    np.testing.assert_allclose(wide[0][0], x[:4] / 255.0, rtol=1e-6)
    features = rng.uniform(size=(10, 6)).astype(np.float32)  # floats in [0, 1] are kept as they are
    np.testing.assert_array_equal(data.Batches(features, y, 4)[0][0], features[:4])


@pytest.mark.parametrize(
    "x,y,kwargs,message",
    [
        (np.full((4, 2, 2, 1), 255.0), np.zeros(4, int), {}, "got values 255..255"),
        (np.full((4, 2, 2, 1), 300, np.int32), np.zeros(4, int), {}, "pixel values 0..255"),
        (np.zeros((0, 2, 2, 1), np.uint8), np.zeros(0, int), {}, "at least one sample"),
        (
            np.zeros((4, 2, 2, 1), np.uint8),
            np.array([0.0, 2.7, 1.0, 3.0]),
            {},
            "integer class indices",
        ),
        (np.zeros((4, 2, 2, 1), np.uint8), np.zeros(3, int), {}, "x has 4 samples but y has 3"),
        (np.zeros((4, 2, 2, 1), np.uint8), -np.ones(4, int), {}, "non-negative integers"),
        (
            np.zeros((4, 2, 2, 1), np.uint8),
            np.zeros(4, int),
            {"teacher_logits": np.zeros((3, 10))},
            "3 teacher logits for 4 images",
        ),
        (
            np.zeros((4, 2, 2, 1), np.uint8),
            np.full(4, 12),
            {"teacher_logits": np.zeros((4, 10))},
            "a label is 12 but the teacher logits have 10 classes",
        ),
        (
            np.zeros((4, 2, 2, 1), np.uint8),
            np.zeros(4, int),
            {"teacher_logits": np.full((4, 10), np.nan)},
            "NaN",
        ),
        (np.full((4, 2, 2, 1), np.nan, np.float32), np.zeros(4, int), {}, "NaN"),
        # uint8 pixels shifted by half a level: floats 0.5..15.5, neither whole nor scaled
        (np.arange(16, dtype=np.uint8).reshape(4, 2, 2, 1) + 0.5, np.zeros(4, int), {}, "15.5"),
        (np.full((4, 2, 2, 1), -0.1, np.float32), np.zeros(4, int), {}, r"scaled to \[0, 1\]"),
    ],
)
def test_bad_batches_are_refused_before_any_training(x, y, kwargs, message):
    with pytest.raises(ValueError, match=message):
        data.Batches(x, y, 2, **kwargs)
    with pytest.raises(ValueError, match="batch_size must be a positive integer"):
        data.Batches(np.zeros((4, 2), np.uint8), np.zeros(4, int), 0)


def test_cached_logits_stay_aligned_after_shuffling_and_every_fit_sees_the_same_batches():
    n = 50
    x = np.arange(n, dtype=np.uint8).reshape(n, 1, 1, 1) * np.ones((1, 2, 2, 1), np.uint8)
    y = np.arange(n) % 10
    logits = np.stack([np.arange(n), -np.arange(n)], axis=1).astype(np.float32)  # encodes the index
    logits = np.concatenate([logits, np.zeros((n, 8), np.float32)], axis=1)
    ds = data.Batches(x, y, 8, shuffle=True, seed=3, teacher_logits=logits)

    def epoch():
        order = []
        for images, labels, t in ds:
            idx = np.rint(images[:, 0, 0, 0] * 255).astype(int)
            np.testing.assert_array_equal(t[:, 0], idx)
            np.testing.assert_array_equal(labels, idx % 10)
            order += idx.tolist()
        ds.on_epoch_end()
        return order

    seen = [epoch(), epoch()]
    assert len(ds) == n // 8 and len(seen[0]) == 48  # training batches: the partial one left out
    assert len(set(seen[0])) == 48 and set(seen[0]) != set(seen[1])  # other samples each epoch
    assert seen[0] != list(range(48)) and seen[0] != seen[1]  # shuffled, and reshuffled per epoch
    ds.restart()
    assert epoch() == seen[0]  # the same sequence again, as kdlib.train.fit starts every run
    other = data.Batches(x, y, 8, shuffle=True, seed=3)
    assert [int(v) for v in np.rint(other[0][0][:, 0, 0, 0] * 255)] == seen[0][:8]


# --------------------------------------------------------------------------- augmentation


@pytest.mark.backend
@pytest.mark.parametrize("augment,pad", [("jitter", 2), ("flip_crop", 4)])
def test_augmentation_translates_within_its_padding_on_the_device(augment, pad):
    n = 512
    x = np.zeros((n, 12, 12, 1), np.float32)
    x[:, 5, 6, 0] = 1.0  # one bright pixel, far enough from the border to stay inside
    layer = data.Augment(augment, seed=1)
    out = np.asarray(keras.ops.convert_to_numpy(layer(x, training=True)))
    assert np.allclose(out.sum(axis=(1, 2, 3)), 1.0)  # an exact shift: the pixel moves whole
    positions = np.array([np.argwhere(img[..., 0] > 0.5)[0] for img in out])
    rows, cols = set(positions[:, 0]), set(positions[:, 1])
    assert rows == set(range(5 - pad, 5 + pad + 1))  # every offset in [-pad, pad] occurs
    unflipped = set(range(6 - pad, 6 + pad + 1))
    flipped = {11 - c for c in unflipped}
    if augment == "jitter":
        assert cols == unflipped
    else:  # horizontal flips put the pixel where no translation alone can
        assert cols == unflipped | flipped and (flipped - unflipped) <= cols
    np.testing.assert_array_equal(
        np.asarray(keras.ops.convert_to_numpy(layer(x, training=False))), x
    )
    again = data.Augment(augment, seed=1)(x, training=True)
    np.testing.assert_array_equal(np.asarray(keras.ops.convert_to_numpy(again)), out)  # seeded


def test_unknown_augmentation_is_refused():
    with pytest.raises(ValueError, match="augment must be None or one of"):
        data.Augment("mixup")


# --------------------------------------------------------------------------- the real datasets


REAL = {
    "mnist": (60000, 10000),
    "fashion_mnist": (60000, 10000),
    "cifar10": (50000, 10000),
    "svhn": (73257, 26032),
}


@pytest.mark.parametrize("name", list(REAL))
def test_real_dataset_when_present(name, monkeypatch):
    folder = REAL_DATA_DIR
    if not folder:
        pytest.skip("KDLIB_DATA_DIR was not set when the tests started: no real datasets to check")
    monkeypatch.setenv("KDLIB_DATA_DIR", folder)
    try:
        ds = data.load(name, download=False)
    except data.DatasetNotFoundError:
        pytest.skip(f"{name} is not in {folder} (this machine has no copy)")
    (x, y), (xt, yt) = ds
    assert (len(x), len(xt)) == REAL[name]
    assert x.dtype == np.uint8 and x.shape[1:] == ((28, 28, 1) if "mnist" in name else (32, 32, 3))
    assert x.max() == 255 and x.min() == 0
    assert set(np.unique(y)) == set(range(10)) and set(np.unique(yt)) == set(range(10))
    if name == "mnist":
        np.testing.assert_array_equal(
            np.bincount(yt), [980, 1135, 1032, 1010, 982, 892, 958, 1028, 974, 1009]
        )
    if name == "fashion_mnist":
        np.testing.assert_array_equal(np.bincount(y), [6000] * 10)


def test_the_shared_teacher_never_trains_on_the_students_validation_images(monkeypatch):
    """teachers.vgg holds out the students' validation split (data.splits(dataset, n_val),
    seed 0) whatever training seed it is given, so a KD setting chosen on validation is chosen
    on images the teacher has not seen (notebook 03 with -p seed 1)."""
    from kdlib import teachers

    n = 1000
    ids = np.arange(n)
    x = np.zeros((n, 4, 4, 1), np.uint8)
    x[:, 0, 0, 0], x[:, 0, 1, 0] = ids % 256, ids // 256  # each image names its index
    ds = data.Dataset((x, ids % 10), (x[:10], ids[:10] % 10), name="mnist")
    seen = {}
    monkeypatch.setattr(
        teachers.train,
        "cached_classifier",
        lambda name, build, train, *a, **k: seen.update(x=train.x),
    )
    val = data.splits(ds, 100).val[0]
    val_ids = set(val[:, 0, 0, 0].astype(int) + 256 * val[:, 0, 1, 0].astype(int))
    for seed in (0, 1, 2):
        teachers.vgg(
            ds, n_val=100, n_teacher=None, width=0.125, epochs=1, lr=1e-3, optimizer="adam",
            schedule="constant", augment=None, batch_size=32, seed=seed,
        )  # fmt: skip
        taught = np.asarray(seen["x"]).astype(int)
        taught_ids = set(taught[:, 0, 0, 0] + 256 * taught[:, 0, 1, 0])
        assert len(taught_ids) == 900 and not taught_ids & val_ids, seed
