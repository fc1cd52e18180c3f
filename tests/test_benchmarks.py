"""The benchmark's arithmetic count, against the count by hand for dense layers."""

import importlib.util
from pathlib import Path

import keras
import pytest

spec = importlib.util.spec_from_file_location(
    "distill_throughput", Path(__file__).parents[1] / "benchmarks" / "distill_throughput.py"
)
bench = importlib.util.module_from_spec(spec)
spec.loader.exec_module(bench)


@pytest.mark.backend
def test_the_step_cost_counts_the_forward_and_backward_matmuls():
    sizes, batch = (64, 200, 300, 10), 32
    inputs = keras.Input((sizes[0],))
    x = inputs
    for width in sizes[1:]:
        x = keras.layers.Dense(width)(x)
    cost = bench.step_cost(keras.Model(inputs, x), batch)
    if keras.backend.backend() != "jax":
        assert cost is None  # XLA's count is read on JAX only
        return
    matmuls = [2 * batch * m * n for m, n in zip(sizes, sizes[1:])]
    # forward, the weights' gradients, and the inputs' gradients of every layer but the first
    by_hand = 2 * sum(matmuls) + sum(matmuls[1:])
    flops, moved = cost
    assert by_hand <= flops <= 1.02 * by_hand  # the rest: biases, softmax, the loss
    weights = 4 * sum(m * n for m, n in zip(sizes, sizes[1:]))
    assert moved >= 2 * weights  # each weight is read forward and its gradient written
