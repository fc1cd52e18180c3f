"""Native log lines that report nothing wrong, kept out of notebook outputs.

TensorFlow 2.21 writes lines such as "oneDNN custom operations are on", "Could not find cuda
drivers" and "failed call to cuInit" straight to the process's standard error (file descriptor
2) while it is imported and when it first lists devices, before ``TF_CPP_MIN_LOG_LEVEL`` applies;
its converters and LiteRT write absl INFO/WARNING lines the same way. :func:`filtered_stderr`
runs a block with that descriptor captured and writes back every captured line except those
that match a pattern of such noise, so a real error still shows.
"""

from __future__ import annotations

import contextlib
import os
import re
import sys
import tempfile
from collections.abc import Iterator

STARTUP = re.compile(
    r"absl::InitializeLog|oneDNN custom operations|cudart_stub|cuda_platform\.cc|cuInit|"
    r"cpu_feature_guard|To enable the following instructions|Unable to register cu(DNN|FFT|BLAS)|"
    r"computation placer already registered|TF-TRT Warning|cuda_executor|cuda_diagnostics|"
    r"oneDNN supports DT_HALF only"
)
# The converters' and LiteRT's routine lines: absl INFO and WARNING lines (``I0000 ...``,
# ``W0000 ...``), the quantizer's settings line, LiteRT's "INFO: Created ... delegate".
CONVERTERS = re.compile(
    r"^(?:[IW]\d{4} \d\d:\d\d:\d\d|WARNING: All log messages before absl::InitializeLog"
    r"|fully_quantize: |INFO: |To enable the following instructions|\s*$)"
)


def tensorflow_startup():
    """:func:`filtered_stderr` for TensorFlow's import and first device query."""
    return filtered_stderr(STARTUP)


def first_half_precision_value():
    """Make one float16 value on TensorFlow (call it inside :func:`tensorflow_startup`).

    On a CPU without AVX-512's float16 instructions, the first float16 value a TensorFlow
    process makes logs "oneDNN supports DT_HALF only on platforms with AVX-512. Falling back to
    the default Eigen-based implementation", an error-level line that ``TF_CPP_MIN_LOG_LEVEL=2``
    lets through, once per process. Nothing is wrong (TensorFlow falls back), so it is made here,
    where the start-up filter drops it, and not in a notebook's first mixed-precision cell.
    """
    import keras

    if keras.backend.backend() == "tensorflow":
        import tensorflow as tf

        tf.cast(tf.constant(0.0), tf.float16)


@contextlib.contextmanager
def filtered_stderr(noise: re.Pattern) -> Iterator[None]:
    """Capture file descriptor 2 during the block; afterwards re-emit its lines but those that
    match ``noise``."""
    try:
        saved = os.dup(2)
    except (OSError, ValueError):  # no standard error to capture (rare: a detached process)
        yield
        return
    sys.stderr.flush()
    with tempfile.TemporaryFile() as captured:
        os.dup2(captured.fileno(), 2)
        try:
            yield
        finally:
            sys.stderr.flush()
            os.dup2(saved, 2)
            os.close(saved)
            captured.seek(0)
            kept = [
                line
                for line in captured.read().decode(errors="replace").splitlines(keepends=True)
                if not noise.search(line)
            ]
            if kept:
                sys.stderr.write("".join(kept))
                sys.stderr.flush()
