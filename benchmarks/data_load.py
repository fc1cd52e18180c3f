"""Wall time and peak memory of loading each dataset present, cold and warm.

Cold: checksums computed (a fresh verification cache). Warm: the second load, whose files are
already verified. Peak memory is Python's traced peak (NumPy and the decompressed files
included) during the load, next to the size of the arrays returned.
Target: a warm load of CIFAR-10 under 2 s and peak memory under 2x the arrays' size.

    KDLIB_DATA_DIR=../shared/datasets python benchmarks/data_load.py [--synthetic-cifar]

``--synthetic-cifar`` also times full-size files written in CIFAR-10's format (random pixels,
their checksums registered for this run only), for machines without CIFAR-10: the loader's
speed does not depend on the pixel values.
"""

from __future__ import annotations

import argparse
import hashlib
import os
import pickle
import tempfile
import time
import tracemalloc
from pathlib import Path

import numpy as np

from kdlib import data
from kdlib.data import files


def measure(name: str) -> tuple[float, float, int]:
    tracemalloc.start()
    start = time.perf_counter()
    ds = data.load(name, download=False)
    seconds = time.perf_counter() - start
    _, peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    size = sum(a.nbytes for split in ds for a in split)
    return seconds, peak / size, size


def write_synthetic_cifar(root: Path) -> None:
    """Full-size CIFAR-10 python batches with random content, checksums registered."""
    rng = np.random.default_rng(0)
    folder = root / "cifar-10-batches-py"
    folder.mkdir(parents=True)
    for name in [f"data_batch_{i}" for i in range(1, 6)] + ["test_batch"]:
        batch = {
            b"data": rng.integers(0, 256, (10000, 3072), dtype=np.uint8),
            b"labels": [int(v) for v in rng.integers(0, 10, 10000)],
        }
        blob = pickle.dumps(batch, protocol=3)  # raw bytes, as in the official Python 2 pickles
        (folder / name).write_bytes(blob)
        files.CHECKSUMS["cifar10"][name] = hashlib.md5(blob).hexdigest()


def report(label: str, name: str) -> None:
    try:
        cold, _, size = measure(name)
    except data.DatasetNotFoundError:
        print(f"{label:<26}  not present (set KDLIB_DATA_DIR or connect to download)")
        return
    warm, peak, _ = measure(name)
    print(f"{label:<26}{size / 2**20:>10.1f}{cold:>9.2f}{warm:>9.2f}{peak:>13.2f}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--synthetic-cifar", action="store_true")
    args = parser.parse_args()
    os.environ["KDLIB_CACHE_DIR"] = tempfile.mkdtemp(
        prefix="kdlib-bench-"
    )  # cold: nothing verified yet
    print(f"{'dataset':<26}{'arrays MB':>10}{'cold s':>9}{'warm s':>9}{'peak/arrays':>13}")
    for name in data.NAMES:
        report(name, name)
    if args.synthetic_cifar:
        root = Path(tempfile.mkdtemp(prefix="kdlib-cifar-"))
        write_synthetic_cifar(root)
        os.environ["KDLIB_DATA_DIR"] = str(root)
        report("cifar10 (synthetic files)", "cifar10")


if __name__ == "__main__":
    main()
