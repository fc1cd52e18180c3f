"""Bad inputs, bad files and folders, and interrupted runs, tried as a careless user would: each
is refused with an error that names what is wrong, before any work is spent, or gives the right
result. Nothing is lost and nothing is silent."""

from __future__ import annotations

import numpy as np
import pytest

from kdlib import quant, results

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
