"""Fake-quantized layers (k-bit weights and activations) and model-size accounting.

Weights are quantized uniformly and symmetrically: with ``k`` bits a channel's weights take
the values ``s * {-(2**(k-1) - 1), ..., 0, ..., 2**(k-1) - 1}`` with one float32 scale ``s``
per output channel (``per_channel=True``) or per tensor, ``s = max|w| / (2**(k-1) - 1)``;
that is ``2**k - 1`` levels. One bit is the binary case: ``s * sign(w)``, ``s = mean|w|``.
Activations are quantized to ``k`` bits over ``[0, clip]`` after a ReLU whose ``clip`` is
learned (PACT, Choi et al. 2018).

Training keeps float32 "shadow" weights and quantizes them in every forward pass; gradients
pass through the rounding unchanged (the straight-through estimator, written as
``q(w) + w - w`` with the gradient stopped on ``q(w)`` and one ``w``), so the layers work on
every backend.
"""

from __future__ import annotations

import math
from typing import NamedTuple

import keras
import numpy as np
from keras import layers, ops

from kdlib._checks import assert_that


def check_bits(bits, what: str = "bits") -> int:
    """Return ``bits`` if it is an integer in 1..16; otherwise raise a clear ValueError."""
    if isinstance(bits, bool) or not isinstance(bits, (int, np.integer)):
        raise ValueError(
            f"{what} must be an integer from 1 to 16, got {bits!r} ({type(bits).__name__})"
        )
    if not 1 <= bits <= 16:
        raise ValueError(f"{what} must be from 1 to 16, got {bits}")
    return int(bits)


def _ste(x, q):
    """Forward exactly ``q``, backward identity: the straight-through estimator.

    Written as ``q + (x - x)`` with the gradient stopped on ``q`` and the second ``x``, so the
    forward value is bit-for-bit ``q`` (``x + (q - x)`` is not, in floating point)."""
    return ops.stop_gradient(q) + (x - ops.stop_gradient(x))


def quantize_weights(w, bits: int, per_channel: bool = True):
    """Fake-quantize a kernel (output channels on the last axis) to ``bits`` bits with the
    straight-through estimator; see the module docstring for the levels. A kernel holding NaN or
    infinite values is an error: its scale would be NaN and every weight of the channel lost."""
    bits = check_bits(bits)
    assert_that(
        ops.all(ops.isfinite(w)), "quantize_weights: the kernel contains NaN or infinite values"
    )
    axes = tuple(range(len(w.shape) - 1)) if per_channel else None
    if bits == 1:
        scale = ops.mean(ops.abs(w), axis=axes, keepdims=per_channel)
        q = ops.where(w >= 0, scale, -scale)
    else:
        levels = 2 ** (bits - 1) - 1
        scale = ops.maximum(ops.max(ops.abs(w), axis=axes, keepdims=per_channel), 1e-12) / levels
        q = ops.clip(ops.round(w / scale), -levels, levels) * scale
    return _ste(w, q)


class _QuantKernel:
    """Shared by QuantDense and QuantConv2D: bit width, scales and the quantized kernel."""

    def _init_quant(self, weight_bits, per_channel):
        self.weight_bits = check_bits(weight_bits, "weight_bits")
        self.per_channel = bool(per_channel)

    def quantized_kernel(self):
        return quantize_weights(self.kernel, self.weight_bits, self.per_channel)

    def effective_kernel(self) -> np.ndarray:
        """The kernel as the layer uses it (its quantized values), as a NumPy array."""
        return np.asarray(ops.convert_to_numpy(self.quantized_kernel()))

    def storage_bytes(self) -> int:
        """Bytes to store this layer: k-bit kernel, float32 scales, float32 bias."""
        n_scales = int(self.kernel.shape[-1]) if self.per_channel else 1
        bias = int(np.prod(self.bias.shape)) if self.use_bias else 0
        return math.ceil(int(np.prod(self.kernel.shape)) * self.weight_bits / 8) + 4 * (
            n_scales + bias
        )

    def _quant_config(self) -> dict:
        return {"weight_bits": self.weight_bits, "per_channel": self.per_channel}


@keras.saving.register_keras_serializable(package="kdlib")
class QuantDense(_QuantKernel, layers.Dense):
    """``keras.layers.Dense`` with ``weight_bits``-bit weights (straight-through estimator)."""

    def __init__(self, units, *, weight_bits: int = 8, per_channel: bool = True, **kwargs):
        super().__init__(units, **kwargs)
        self._init_quant(weight_bits, per_channel)

    def call(self, inputs, training=None):
        y = ops.matmul(inputs, self.quantized_kernel())
        if self.use_bias:
            y = ops.add(y, self.bias)
        return self.activation(y) if self.activation is not None else y

    def get_config(self):
        return {**super().get_config(), **self._quant_config()}


@keras.saving.register_keras_serializable(package="kdlib")
class QuantConv2D(_QuantKernel, layers.Conv2D):
    """``keras.layers.Conv2D`` with ``weight_bits``-bit weights (straight-through estimator)."""

    def __init__(
        self, filters, kernel_size, *, weight_bits: int = 8, per_channel: bool = True, **kwargs
    ):
        super().__init__(filters, kernel_size, **kwargs)
        self._init_quant(weight_bits, per_channel)

    def call(self, inputs, training=None):
        y = self.convolution_op(inputs, self.quantized_kernel())
        if self.use_bias:
            y = ops.add(y, ops.reshape(self.bias, (1,) * (len(y.shape) - 1) + (-1,)))
        return self.activation(y) if self.activation is not None else y

    def get_config(self):
        return {**super().get_config(), **self._quant_config()}


@keras.saving.register_keras_serializable(package="kdlib")
class QuantReLU(layers.Layer):
    """ReLU clipped at a learned ``clip`` (PACT) and quantized to ``bits`` bits over
    ``[0, clip]``: ``2**bits`` activation levels."""

    def __init__(self, bits: int = 4, clip: float = 6.0, **kwargs):
        super().__init__(**kwargs)
        self.bits = check_bits(bits, "activation bits")
        if (
            isinstance(clip, bool)
            or not isinstance(clip, (int, float, np.floating))
            or not clip > 0
        ):
            raise ValueError(
                f"clip is the initial upper bound of the activations and must be > 0, got {clip!r}"
            )
        self.initial_clip = float(clip)

    def build(self, input_shape):
        self.clip = self.add_weight(
            shape=(), initializer=keras.initializers.Constant(self.initial_clip), name="clip"
        )

    def call(self, x):
        clip = ops.cast(ops.maximum(self.clip, 1e-3), x.dtype)
        y = ops.minimum(ops.relu(x), clip)  # d/dclip = 1 where x > clip: PACT's gradient
        step = clip / (2**self.bits - 1)
        return _ste(y, ops.round(y / step) * step)

    def get_config(self):
        return {**super().get_config(), "bits": self.bits, "clip": self.initial_clip}


class ModelSize(NamedTuple):
    """Bytes to store a model's weights as quantized, and the same weights all in float32."""

    bytes: int
    float32_bytes: int

    @property
    def mb(self) -> float:
        return self.bytes / 2**20

    @property
    def float32_mb(self) -> float:
        return self.float32_bytes / 2**20


def _leaf_layers(model: keras.Model):
    for layer in model.layers:
        if isinstance(layer, keras.Model):
            yield from _leaf_layers(layer)
        else:
            yield layer


def model_size_bytes(model: keras.Model) -> ModelSize:
    """Storage of every weight at its bit width (quantized kernels at ``weight_bits`` plus their
    float32 scales; everything else, BatchNorm statistics included, at 4 bytes), next to the
    all-float32 size."""
    total = 0
    for layer in _leaf_layers(model):
        if isinstance(layer, _QuantKernel):
            total += layer.storage_bytes()
        else:
            total += 4 * sum(int(np.prod(w.shape)) for w in layer.weights)
    return ModelSize(total, 4 * model.count_params())
