"""Datasets from their official files, verified (NumPy only: no TensorFlow, no Keras needed).

``load(name)`` returns ``(x_train, y_train), (x_test, y_test)`` as NumPy arrays (images
``uint8`` NHWC, labels ``int64`` in 0..9); the returned object also carries ``.name`` (the
dataset actually loaded), ``.class_names`` and ``.source`` (the folder it came from).

Where it looks, in order:

1. ``data_dir`` (an argument), 2. ``$KDLIB_DATA_DIR``, 3. the Keras cache
(``~/.keras/datasets``, or ``$KERAS_HOME/datasets``), 4. system folders (Debian's
``dataset-fashion-mnist`` package installs ``/usr/share/datasets/fashion-mnist/``),
5. a download from the official source with ``keras.utils.get_file`` and the official checksum.

In each place it tries the dataset's usual sub-folders (``mnist/``, ``fashion-mnist/``,
``cifar-10-batches-py/``, ``svhn/``, ...) and then the place itself. Every file is checked
against its known checksum before use (IDX ``.gz`` files by their decompressed content, so the
official and Debian's re-compressed copies both pass); a file that fails is an error, never
used. Verified files are remembered so a second load does not hash them again: by path, size,
modification time, inode and inode-change time (``ctime``). Rewriting a file in place changes its
``ctime`` even when its size and modification time are put back, so an edited file is hashed
again; what the cache trusts is that nobody rewrites a file without the filesystem noticing. Set
``KDLIB_REVERIFY=1`` to hash every file again regardless (or delete ``verified.json`` in the
kdlib cache folder). Downloads are checked against the checksum their source publishes: SHA-256
for Keras's ``mnist.npz``; the Fashion-MNIST, CIFAR-10 and SVHN sources publish MD5 only.
Pickled CIFAR batches are unpickled only after their checksum matched, and
then with an unpickler that only builds NumPy arrays.

Offline, a dataset that is not found is an error naming every place searched, unless you ask
for an announced stand-in: ``load("cifar10", standin="fashion_mnist")``.
"""

from __future__ import annotations

import gzip
import hashlib
import io
import json
import os
import pickle
import socket
import tarfile
from pathlib import Path
from urllib.parse import urlsplit

import numpy as np

from kdlib import _io

NAMES = ("mnist", "fashion_mnist", "cifar10", "svhn")

CLASS_NAMES = {
    "mnist": [str(d) for d in range(10)],
    "fashion_mnist": [
        "T-shirt/top",
        "Trouser",
        "Pullover",
        "Dress",
        "Coat",
        "Sandal",
        "Shirt",
        "Sneaker",
        "Bag",
        "Ankle boot",
    ],
    "cifar10": [
        "airplane",
        "automobile",
        "bird",
        "cat",
        "deer",
        "dog",
        "frog",
        "horse",
        "ship",
        "truck",
    ],
    "svhn": [str(d) for d in range(10)],
}

# (train, test) sizes of the official datasets: lets a notebook's settings be checked before
# any file is read.
SIZES = {
    "mnist": (60000, 10000),
    "fashion_mnist": (60000, 10000),
    "cifar10": (50000, 10000),
    "svhn": (73257, 26032),
}

IDX_FILES = (
    "train-images-idx3-ubyte.gz",
    "train-labels-idx1-ubyte.gz",
    "t10k-images-idx3-ubyte.gz",
    "t10k-labels-idx1-ubyte.gz",
)

# MD5 of each IDX file's *decompressed* content (identical for the official and Debian copies).
CHECKSUMS = {
    "mnist": {
        "train-images-idx3-ubyte.gz": "6bbc9ace898e44ae57da46a324031adb",
        "train-labels-idx1-ubyte.gz": "a25bea736e30d166cdddb491f175f624",
        "t10k-images-idx3-ubyte.gz": "2646ac647ad5339dbf082846283269ea",
        "t10k-labels-idx1-ubyte.gz": "27ae3e4e09519cfbb04c329615203637",
        # Keras's mnist.npz, whole file, SHA-256.
        "mnist.npz": "731c5ac602752760c8e48fbffcf8c3b850d9dc2a2aedcf2cc48468fc17b673d1",
    },
    "fashion_mnist": {
        "train-images-idx3-ubyte.gz": "f4a8712d7a061bf5bd6d2ca38dc4d50a",
        "train-labels-idx1-ubyte.gz": "9018921c3c673c538a1fc5bad174d6f9",
        "t10k-images-idx3-ubyte.gz": "8181f5470baa50b63fa0f6fddb340f0a",
        "t10k-labels-idx1-ubyte.gz": "15d484375f8d13e6eb1aabb0c3f46965",
    },
    "cifar10": {
        "data_batch_1": "c99cafc152244af753f735de768cd75f",
        "data_batch_2": "d4bba439e000b95fd0a9bffe97cbabec",
        "data_batch_3": "54ebc095f3ab1f0389bbae665268c751",
        "data_batch_4": "634d18415352ddfa80567beed471001a",
        "data_batch_5": "482c414d41f54cd18b22e5b47cb7c3cb",
        "test_batch": "40351d587109b95175f43aff81a1287e",
        "cifar-10-python.tar.gz": "c58f30108f718f92721af3b95e74349a",
    },
    "svhn": {
        "train_32x32.mat": "e26dedcc434d2e4c54c9b2d4a06d8373",
        "test_32x32.mat": "eb5a983be6a315427106f1b164d9cef3",
    },
}

# Official sources and the checksums of the files as downloaded.
DOWNLOADS = {
    "mnist": [
        (
            "https://storage.googleapis.com/tensorflow/tf-keras-datasets/mnist.npz",
            "mnist.npz",
            CHECKSUMS["mnist"]["mnist.npz"],
        )
    ],
    "fashion_mnist": [
        (
            f"https://raw.githubusercontent.com/zalandoresearch/fashion-mnist/master/data/fashion/{f}",
            f,
            md5,
        )
        for f, md5 in [
            ("train-images-idx3-ubyte.gz", "8d4fb7e6c68d591d4c3dfef9ec88bf0d"),
            ("train-labels-idx1-ubyte.gz", "25c81989df183df01b3e8a0aad5dffbe"),
            ("t10k-images-idx3-ubyte.gz", "bef4ecab320f06d8554ea6380940ec79"),
            ("t10k-labels-idx1-ubyte.gz", "bb300cfdad3c16e7a12a480ee83cd310"),
        ]
    ],
    "cifar10": [
        (
            "https://www.cs.toronto.edu/~kriz/cifar-10-python.tar.gz",
            "cifar-10-python.tar.gz",
            CHECKSUMS["cifar10"]["cifar-10-python.tar.gz"],
        )
    ],
    "svhn": [
        (f"http://ufldl.stanford.edu/housenumbers/{f}", f, CHECKSUMS["svhn"][f])
        for f in ("train_32x32.mat", "test_32x32.mat")
    ],
}

SUBFOLDERS = {
    "mnist": ("mnist", "MNIST"),
    "fashion_mnist": ("fashion-mnist", "fashion_mnist", "FashionMNIST"),
    "cifar10": ("cifar-10-batches-py", "cifar10", "cifar-10"),
    "svhn": ("svhn", "SVHN"),
}

SYSTEM_DIRS = {"fashion_mnist": ("/usr/share/datasets/fashion-mnist",)}

WHAT_TO_PUT = {
    "mnist": "mnist.npz, or the four IDX .gz files (train-images-idx3-ubyte.gz, ...)",
    "fashion_mnist": "the four IDX .gz files (train-images-idx3-ubyte.gz, ...)",
    "cifar10": "cifar-10-batches-py/ or cifar-10-python.tar.gz",
    "svhn": "train_32x32.mat and test_32x32.mat",
}


PRETTY = {"mnist": "MNIST", "fashion_mnist": "Fashion-MNIST", "cifar10": "CIFAR-10", "svhn": "SVHN"}


class DatasetNotFoundError(FileNotFoundError):
    """The dataset is in none of the places searched and could not be downloaded."""


class ChecksumError(ValueError):
    """A dataset file is present but is not the official file (corrupt, truncated or other)."""


class DatasetFormatError(ValueError):
    """A dataset file is present but cannot be parsed (truncated archive, wrong header)."""


class Dataset(tuple):
    """``((x_train, y_train), (x_test, y_test))`` with ``name`` (the dataset loaded),
    ``requested`` (the dataset asked for), ``class_names`` and ``source`` (where it came from)."""

    def __new__(cls, train, test, *, name, requested=None, source=""):
        self = super().__new__(cls, (train, test))
        self.name = name
        self.requested = requested or name
        self.class_names = CLASS_NAMES[name]
        self.source = str(source)
        return self

    @property
    def is_standin(self) -> bool:
        return self.name != self.requested

    @property
    def label(self) -> str:
        """The dataset's name for titles, axes and tables: ``"CIFAR-10"``, or
        ``"Fashion-MNIST (stand-in for CIFAR-10)"`` when a stand-in was loaded."""
        if self.is_standin:
            return f"{PRETTY[self.name]} (stand-in for {PRETTY[self.requested]})"
        return PRETTY[self.name]

    def describe(self) -> str:
        """One line: what was loaded, from where, and its shape."""
        (x, _), (xt, _) = self
        shape = "x".join(map(str, x.shape[1:]))
        return f"{self.label}: {len(x):,} train / {len(xt):,} test images of {shape}"


# --------------------------------------------------------------------------- checksums


def _digest(data: bytes, expected: str) -> str:
    """MD5 or SHA-256 of ``data``, whichever ``expected`` is (by its length)."""
    algorithm = hashlib.sha256 if len(expected) == 64 else hashlib.md5
    return algorithm(data).hexdigest()


def _verified_db() -> Path:
    from kdlib.cache import cache_dir

    return cache_dir() / "verified.json"


def _stamp(path: Path, expected: str) -> str:
    st = path.stat()
    return f"{path.resolve()}|{st.st_size}|{st.st_mtime_ns}|{st.st_ino}|{st.st_ctime_ns}|{expected}"


def _is_verified(path: Path, expected: str) -> bool:
    if os.environ.get("KDLIB_REVERIFY", "") not in ("", "0"):
        return False
    try:
        return _stamp(path, expected) in json.loads(_verified_db().read_text())
    except (OSError, ValueError):
        return False


def _remember(path: Path, expected: str) -> None:
    db = _verified_db()
    try:
        known = json.loads(db.read_text())
    except (OSError, ValueError):
        known = []
    known = [k for k in known if not k.startswith(f"{path.resolve()}|")] + [_stamp(path, expected)]
    try:
        _io.write_json(db, known)
    except OSError:  # a read-only cache only costs a re-hash next time
        pass


def _check(path: Path, content: bytes, expected: str, what: str = "") -> None:
    """Raise ChecksumError unless ``content`` (the file, or its decompressed content) matches."""
    if _is_verified(path, expected):
        return
    actual = _digest(content, expected)
    if actual != expected:
        raise ChecksumError(
            f"{path}: checksum of its {what or 'content'} is {actual}, expected {expected}. "
            "The file is corrupt, truncated or not the official one; delete it and load again."
        )
    _remember(path, expected)


# --------------------------------------------------------------------------- readers


def _unreadable(path: Path, e: OSError) -> PermissionError:
    return PermissionError(
        f"{path}: cannot read it ({e.strerror or e}); check the file's permissions. The file "
        "itself may be fine: do not delete it for this."
    )


def _read_bytes(path: Path) -> bytes:
    try:
        return path.read_bytes()
    except PermissionError as e:
        raise _unreadable(path, e) from e


def _read_gz(path: Path) -> bytes:
    try:
        with gzip.open(path, "rb") as f:
            return f.read()
    except PermissionError as e:
        raise _unreadable(path, e) from e
    except (OSError, EOFError) as e:
        raise DatasetFormatError(
            f"{path}: not a complete gzip file ({e}); delete it and load again"
        ) from e


def _parse_idx(path: Path, raw: bytes, expected_magic: int) -> np.ndarray:
    """Parse an IDX file (big-endian header: magic, then one uint32 per dimension)."""
    magic = int.from_bytes(raw[:4], "big")
    if magic != expected_magic:
        raise DatasetFormatError(f"{path}: IDX magic number {magic}, expected {expected_magic}")
    ndim = magic & 0xFF
    dims = [int.from_bytes(raw[4 + 4 * i : 8 + 4 * i], "big") for i in range(ndim)]
    offset = 4 + 4 * ndim
    if len(raw) - offset != int(np.prod(dims)):
        raise DatasetFormatError(f"{path}: header says {dims}, data has {len(raw) - offset} bytes")
    return np.frombuffer(raw, dtype=np.uint8, offset=offset).reshape(dims)


def _read_idx_set(folder: Path, checksums: dict) -> tuple | None:
    present = [f for f in IDX_FILES if (folder / f).is_file()]
    if not present:
        return None
    missing = sorted(set(IDX_FILES) - set(present))
    if missing:
        raise DatasetNotFoundError(
            f"{folder} holds only part of the dataset: missing {', '.join(missing)}"
        )
    arrays = []
    for f in IDX_FILES:
        raw = _read_gz(folder / f)
        _check(folder / f, raw, checksums[f], "decompressed content")
        arrays.append(_parse_idx(folder / f, raw, 2051 if "images" in f else 2049))
    x_train, y_train, x_test, y_test = arrays
    return (x_train[..., None], y_train.astype(np.int64)), (
        x_test[..., None],
        y_test.astype(np.int64),
    )


def _read_mnist(folder: Path) -> tuple | None:
    npz = folder / "mnist.npz"
    if npz.is_file():
        raw = _read_bytes(npz)
        _check(npz, raw, CHECKSUMS["mnist"]["mnist.npz"], "file")
        with np.load(io.BytesIO(raw), allow_pickle=False) as f:
            x, y, xt, yt = f["x_train"], f["y_train"], f["x_test"], f["y_test"]
        return (x[..., None], y.astype(np.int64)), (xt[..., None], yt.astype(np.int64))
    return _read_idx_set(folder, CHECKSUMS["mnist"])


def _read_fashion(folder: Path) -> tuple | None:
    return _read_idx_set(folder, CHECKSUMS["fashion_mnist"])


class _ArrayUnpickler(pickle.Unpickler):
    """Unpickles dicts, lists, bytes and NumPy arrays, and nothing that could run code."""

    ALLOWED = {
        ("numpy.core.multiarray", "_reconstruct"),
        ("numpy._core.multiarray", "_reconstruct"),
        ("numpy", "ndarray"),
        ("numpy", "dtype"),
        ("_codecs", "encode"),  # how protocol-2 pickles written by Python 3 store bytes
    }

    def find_class(self, module, name):
        if (module, name) in self.ALLOWED:
            return super().find_class(module, name)
        raise pickle.UnpicklingError(f"refusing to unpickle {module}.{name}")


def _cifar_batch(path: Path) -> tuple[np.ndarray, np.ndarray]:
    raw = _read_bytes(path)
    _check(path, raw, CHECKSUMS["cifar10"][path.name], "file")
    batch = _ArrayUnpickler(io.BytesIO(raw), encoding="bytes").load()
    data = np.asarray(batch[b"data"], dtype=np.uint8)
    labels = np.asarray(batch[b"labels"], dtype=np.int64)
    return data.reshape(-1, 3, 32, 32), labels


def _read_cifar_folder(folder: Path) -> tuple | None:
    names = [f"data_batch_{i}" for i in range(1, 6)] + ["test_batch"]
    present = [n for n in names if (folder / n).is_file()]
    if not present:
        return None
    missing = sorted(set(names) - set(present))
    if missing:
        raise DatasetNotFoundError(
            f"{folder} holds only part of CIFAR-10: missing {', '.join(missing)}"
        )
    # Fill one preallocated array batch by batch (all five batches have the first one's size),
    # so the peak memory stays near the size of the result.
    x_train = y_train = None
    for i, n in enumerate(names[:5]):
        images, y = _cifar_batch(folder / n)
        if x_train is None:
            x_train = np.empty((5 * len(y), 32, 32, 3), dtype=np.uint8)
            y_train = np.empty(5 * len(y), dtype=np.int64)
        elif 5 * len(y) != len(y_train):
            raise DatasetFormatError(f"{folder / n}: {len(y)} images, unlike the other batches")
        x_train[i * len(y) : (i + 1) * len(y)] = images.transpose(0, 2, 3, 1)
        y_train[i * len(y) : (i + 1) * len(y)] = y
    test, y_test = _cifar_batch(folder / "test_batch")
    return (x_train, y_train), (np.ascontiguousarray(test.transpose(0, 2, 3, 1)), y_test)


def _extract_cifar(archive: Path) -> Path:
    """Verify the official archive and extract its batches into the Keras cache."""
    _check(archive, _read_bytes(archive), CHECKSUMS["cifar10"][archive.name], "file")
    target = keras_cache() / "cifar-10-batches-py"
    try:
        with tarfile.open(archive, "r:gz") as tar:
            for member in tar.getmembers():
                name = Path(member.name).name
                if member.isfile() and name in CHECKSUMS["cifar10"]:
                    f = tar.extractfile(member)
                    with _io.atomic_path(target / name) as tmp:
                        tmp.write_bytes(f.read())
    except (tarfile.TarError, EOFError, OSError) as e:
        raise DatasetFormatError(
            f"{archive}: cannot extract ({e}); delete it and load again"
        ) from e
    return target


def _read_cifar(folder: Path) -> tuple | None:
    found = _read_cifar_folder(folder)
    if found is None and (folder / "cifar-10-python.tar.gz").is_file():
        found = _read_cifar_folder(_extract_cifar(folder / "cifar-10-python.tar.gz"))
    return found


def _svhn_split(path: Path) -> tuple[np.ndarray, np.ndarray]:
    from scipy.io import loadmat

    raw = _read_bytes(path)
    _check(path, raw, CHECKSUMS["svhn"][path.name], "file")
    try:
        mat = loadmat(io.BytesIO(raw))
    except (ValueError, OSError) as e:
        raise DatasetFormatError(f"{path}: not a readable .mat file ({e})") from e
    x = np.ascontiguousarray(np.transpose(mat["X"], (3, 0, 1, 2)), dtype=np.uint8)  # 32x32x3xN -> N
    y = mat["y"].reshape(-1).astype(np.int64)
    y[y == 10] = 0  # SVHN labels the digit 0 as 10
    return x, y


def _read_svhn(folder: Path) -> tuple | None:
    names = ("train_32x32.mat", "test_32x32.mat")
    present = [n for n in names if (folder / n).is_file()]
    if not present:
        return None
    if len(present) < 2:
        missing = sorted(set(names) - set(present))
        raise DatasetNotFoundError(
            f"{folder} holds only part of SVHN: missing {', '.join(missing)}"
        )
    return _svhn_split(folder / names[0]), _svhn_split(folder / names[1])


READERS = {
    "mnist": _read_mnist,
    "fashion_mnist": _read_fashion,
    "cifar10": _read_cifar,
    "svhn": _read_svhn,
}


# --------------------------------------------------------------------------- search and download


def keras_cache() -> Path:
    """Keras's dataset cache: ``$KERAS_HOME/datasets`` or ``~/.keras/datasets``."""
    return Path(os.environ.get("KERAS_HOME", Path.home() / ".keras")).expanduser() / "datasets"


def search_path(
    name: str, data_dir: str | os.PathLike | None = None
) -> list[tuple[str, Path | None]]:
    """The places ``load(name)`` searches, in order, as ``(description, path or None)``."""
    env = os.environ.get("KDLIB_DATA_DIR")
    places = [
        ("data_dir argument", Path(data_dir).expanduser() if data_dir else None),
        ("$KDLIB_DATA_DIR", Path(env).expanduser() if env else None),
        ("Keras cache", keras_cache()),
    ]
    places += [("system folder", Path(p)) for p in SYSTEM_DIRS.get(name, ())]
    return places


def _find(name: str, data_dir) -> Dataset | None:
    for _, base in search_path(name, data_dir):
        if base is None or not base.is_dir():
            continue
        for folder in [base / sub for sub in SUBFOLDERS[name]] + [base]:
            if folder.is_dir():
                found = READERS[name](folder)
                if found is not None:
                    return Dataset(*found, name=name, source=folder)
    return None


def _check_reachable(url: str, timeout: float = 5.0) -> None:
    """Raise OSError at once when ``url``'s host cannot be reached (offline), before Keras
    announces a download that cannot happen."""
    parts = urlsplit(url)
    port = parts.port or (443 if parts.scheme == "https" else 80)
    try:
        socket.create_connection((parts.hostname, port), timeout=timeout).close()
    except OSError as e:
        raise OSError(f"cannot reach {parts.hostname}: {e}") from e


def _download(name: str) -> Dataset:
    """Fetch the official files into the Keras cache (checksums verified), then read them."""
    import keras

    subdir = {"mnist": "datasets", "cifar10": "datasets"}.get(
        name, f"datasets/{SUBFOLDERS[name][0]}"
    )
    _check_reachable(DOWNLOADS[name][0][0])
    previous = socket.getdefaulttimeout()
    socket.setdefaulttimeout(30)
    try:
        for url, fname, checksum in DOWNLOADS[name]:
            keras.utils.get_file(fname, origin=url, file_hash=checksum, cache_subdir=subdir)
    finally:
        socket.setdefaulttimeout(previous)
    folder = keras_cache().parent / subdir
    return Dataset(*READERS[name](folder), name=name, source=folder)


def _not_found(name: str, data_dir, download_error: str | None) -> DatasetNotFoundError:
    lines = [f"Dataset {name!r} was not found. Searched, in order:"]
    for what, path in search_path(name, data_dir):
        lines.append(f"  - {what}: {path if path else '(not set)'}")
    if download_error is None:
        lines.append("  - download: not tried (download=False)")
    else:
        lines.append(f"  - download from {DOWNLOADS[name][0][0]}: failed ({download_error})")
    lines.append(
        f"To fix: put {WHAT_TO_PUT[name]} in a folder named like {SUBFOLDERS[name][0]!r} under one "
        "of these places (for example set KDLIB_DATA_DIR=/path/to/datasets), or connect to the "
        "internet and load again."
    )
    return DatasetNotFoundError("\n".join(lines))


def _load(name: str, data_dir, download: bool) -> Dataset:
    found = _find(name, data_dir)
    if found is not None:
        return found
    if not download:
        raise _not_found(name, data_dir, None)
    try:
        return _download(name)
    except ValueError:  # a checksum or format error in what was downloaded: report it as such
        raise
    except Exception as e:  # offline: keras.utils.get_file raises a bare Exception
        raise _not_found(name, data_dir, f"{type(e).__name__}: {e}") from e


def load(
    name: str,
    data_dir: str | os.PathLike | None = None,
    download: bool = True,
    standin: str | None = None,
) -> Dataset:
    """Load ``name`` (one of ``NAMES``) from its official files; see the module docstring.

    ``standin``: a dataset to load *instead* when ``name`` is not found (offline and absent).
    A banner says so, and the result's ``.name`` is the stand-in's, so records show what was
    used. A file that is present but fails its checksum is an error either way.
    """
    if not isinstance(name, str):
        raise ValueError(f"load needs a dataset name, one of {NAMES}; got {name!r}")
    if data_dir is not None and not Path(data_dir).expanduser().is_dir():
        raise FileNotFoundError(
            f"data_dir={str(data_dir)!r} is not a folder: give the folder that holds the "
            "dataset (or leave data_dir out to search $KDLIB_DATA_DIR and the usual places)"
        )
    for n in (name, standin):
        if n is not None and n not in NAMES:
            raise ValueError(f"unknown dataset {n!r}; choose one of {NAMES}")
    try:
        return _load(name, data_dir, download)
    except DatasetNotFoundError:
        if standin is None:
            raise
        places = ", ".join(str(p) for _, p in search_path(name, data_dir) if p is not None)
        reason = f"not in {places}, and {'not downloadable here' if download else 'download=False'}"
        data = _load(standin, data_dir, download)
        banner = "=" * 78
        wanted, used = PRETTY[name], PRETTY[standin]
        print(
            f"{banner}\nSTAND-IN DATA: {wanted} is not available here ({reason}).\n"
            f"Using the real {used} dataset instead. Every number below is a {used} number,\n"
            f"not a {wanted} number. With internet (or {wanted} in KDLIB_DATA_DIR) the same code "
            f"runs on {wanted}.\n{banner}"
        )
        return Dataset(*data, name=standin, requested=name, source=data.source)
