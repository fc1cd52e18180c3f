"""kdlib.quant (fake quantization, sizes) and kdlib.models (shapes, parameter counts)."""

import keras
import numpy as np
import pytest

from kdlib import losses, models, quant

rng = np.random.default_rng(3)


def _quant_model(bits, act_bits=None, per_channel=True):
    i = keras.Input((8, 8, 2))
    x = quant.QuantConv2D(5, 3, weight_bits=bits, per_channel=per_channel, name="qconv")(i)
    x = quant.QuantReLU(act_bits, name="qrelu")(x) if act_bits else keras.layers.ReLU()(x)
    x = keras.layers.Flatten()(x)
    return keras.Model(
        i, quant.QuantDense(3, weight_bits=bits, per_channel=per_channel, name="qdense")(x)
    )


@pytest.mark.backend
@pytest.mark.parametrize("bits", [1, 2, 3, 4, 8])
@pytest.mark.parametrize("per_channel", [True, False])
def test_trained_k_bit_weights_take_at_most_2_to_the_k_minus_1_values(bits, per_channel):
    keras.utils.set_random_seed(bits)
    model = _quant_model(bits, per_channel=per_channel)
    model.compile("adam", keras.losses.SparseCategoricalCrossentropy(from_logits=True))
    x = rng.normal(size=(64, 8, 8, 2)).astype(np.float32)
    y = rng.integers(0, 3, 64)
    before = model.get_layer("qdense").effective_kernel()
    model.fit(x, y, epochs=2, batch_size=16, verbose=0)
    for name in ("qconv", "qdense"):
        k = model.get_layer(name).effective_kernel()
        per = k.reshape(-1, k.shape[-1])
        levels = 2 if bits == 1 else 2**bits - 1  # symmetric: the level -2**(k-1) is unused
        for c in range(per.shape[1]):
            assert len(np.unique(per[:, c])) <= levels
        if not per_channel:
            assert len(np.unique(per)) <= levels
    assert not np.array_equal(before, model.get_layer("qdense").effective_kernel())  # it trained


def _quantize_reference(w, bits, per_channel):
    """The module docstring's levels, in float64: ``s * round(w / s)`` clipped to
    ``±(2**(k-1) - 1)``, ``s = max|w| / (2**(k-1) - 1)``; one bit: ``mean|w| * sign(w)``."""
    w = np.asarray(w, np.float64)
    axes = tuple(range(w.ndim - 1)) if per_channel else None
    if bits == 1:
        return np.where(w >= 0, 1.0, -1.0) * np.abs(w).mean(axis=axes, keepdims=per_channel)
    levels = 2 ** (bits - 1) - 1
    scale = np.abs(w).max(axis=axes, keepdims=per_channel) / levels
    return np.clip(np.round(w / scale), -levels, levels) * scale


@pytest.mark.backend
@pytest.mark.parametrize("shape", [(50, 4), (3, 3, 2, 5)])
@pytest.mark.parametrize("bits", [1, 2, 3, 4, 8])
@pytest.mark.parametrize("per_channel", [True, False])
def test_quantized_values_are_symmetric_uniform_levels(shape, bits, per_channel):
    w = rng.normal(size=shape).astype(np.float32)
    q = np.asarray(keras.ops.convert_to_numpy(quant.quantize_weights(w, bits, per_channel)))
    np.testing.assert_allclose(q, _quantize_reference(w, bits, per_channel), rtol=1e-5, atol=1e-7)


@pytest.mark.backend
@pytest.mark.parametrize("per_channel", [True, False])
def test_quantized_layers_compute_with_their_quantized_kernel(per_channel):
    """QuantDense and QuantConv2D against NumPy: x @ q(W) + b, and a 'valid' 3×3 convolution
    written as a sum over the kernel's offsets, with the float64 reference's q(W)."""
    x = rng.normal(size=(2, 6, 6, 3)).astype(np.float32)
    conv = quant.QuantConv2D(4, 3, weight_bits=3, per_channel=per_channel)
    conv.build(x.shape)
    conv.bias.assign(rng.normal(size=4).astype(np.float32))
    k = _quantize_reference(conv.kernel.numpy(), 3, per_channel)
    expected = sum(
        np.einsum("nhwc,cf->nhwf", x[:, i : i + 4, j : j + 4].astype(np.float64), k[i, j])
        for i in range(3)
        for j in range(3)
    )
    got = np.asarray(keras.ops.convert_to_numpy(conv(x)))
    np.testing.assert_allclose(got, expected + conv.bias.numpy(), rtol=1e-4, atol=1e-5)
    flat = x.reshape(2, -1)
    dense = quant.QuantDense(5, weight_bits=2, per_channel=per_channel)
    dense.build(flat.shape)
    dense.bias.assign(rng.normal(size=5).astype(np.float32))
    k = _quantize_reference(dense.kernel.numpy(), 2, per_channel)
    got = np.asarray(keras.ops.convert_to_numpy(dense(flat)))
    np.testing.assert_allclose(got, flat @ k + dense.bias.numpy(), rtol=1e-4, atol=1e-5)


@pytest.mark.backend
def test_straight_through_estimator_passes_the_gradient():
    w = rng.normal(size=(6, 3)).astype(np.float32)
    g = losses.logit_gradient(
        lambda v: keras.ops.sum(
            quant.quantize_weights(v, 2) * np.arange(18.0, dtype=np.float32).reshape(6, 3)
        ),
        w,
    )
    np.testing.assert_allclose(g, np.arange(18.0).reshape(6, 3), rtol=1e-6)


@pytest.mark.backend
def test_quantized_activations_match_the_reference_and_learn_their_clip():
    """QuantReLU against NumPy: ``round(min(relu(x), c) / step) * step``, ``step = c/(2**k-1)``;
    its gradient (straight through the rounding) is 1 for inputs in (0, c), and d/dc counts the
    inputs above the clip (PACT)."""
    layer = quant.QuantReLU(2, clip=3.0)
    x = np.linspace(-2, 5, 200, dtype=np.float32).reshape(1, 200)  # 0 and 3 fall between points
    y = np.asarray(keras.ops.convert_to_numpy(layer(x)))
    step = 3.0 / (2**2 - 1)
    expected = np.round(np.clip(x.astype(np.float64), 0, 3.0) / step) * step
    np.testing.assert_allclose(y, expected, atol=1e-6)
    np.testing.assert_allclose(np.unique(y), [0, 1, 2, 3], atol=1e-6)
    weights = np.arange(200, dtype=np.float32).reshape(1, 200)
    dx = losses.logit_gradient(lambda v: keras.ops.sum(layer(v) * weights), x)
    np.testing.assert_allclose(dx, np.where((x > 0) & (x < 3.0), weights, 0.0))
    dclip = losses.logit_gradient(
        lambda c: keras.ops.sum(layer.stateless_call([c], [], x)[0]), np.float32(3.0)
    )
    assert float(dclip) == (x > 3.0).sum()  # inputs above the clip pull it up


def test_size_arithmetic():
    i = keras.Input((20,))
    x = quant.QuantDense(10, weight_bits=4)(i)  # 200 weights at 4 bits, 10 scales, 10 biases
    x = keras.layers.BatchNormalization()(x)  # 4 x 10 float32
    out = keras.layers.Dense(2)(x)  # 22 float32
    model = keras.Model(i, out)
    size = quant.model_size_bytes(model)
    assert size.bytes == 100 + 40 + 40 + 160 + 88
    assert size.float32_bytes == 4 * (210 + 40 + 22)
    q = quant.QuantConv2D(8, 3, weight_bits=3, per_channel=False, use_bias=False)
    q.build((None, 5, 5, 3))
    assert q.storage_bytes() == int(np.ceil(3 * 3 * 3 * 8 * 3 / 8)) + 4


@pytest.mark.parametrize("bits", [0, 17, -1, 4.0, 2.5, "4", True, None])
def test_bad_bit_widths_are_rejected(bits):
    with pytest.raises(ValueError, match="weight_bits must be"):
        quant.QuantDense(4, weight_bits=bits)
    with pytest.raises(ValueError, match="bits must be"):
        quant.quantize_weights(np.ones((2, 2), np.float32), bits)


@pytest.mark.parametrize("clip", [0, -1, float("nan"), "6", None])
def test_a_non_positive_activation_clip_is_rejected(clip):
    with pytest.raises(ValueError, match="clip .* must be > 0"):
        quant.QuantReLU(4, clip=clip)


def test_augmentation_needs_images():
    import keras

    from kdlib import data

    with pytest.raises(
        ValueError, match="needs inputs of shape \\(batch, height, width, channels\\)"
    ):
        data.Augment("jitter")(keras.ops.zeros((2, 6)), training=True)


def test_quantized_model_round_trips_through_a_safe_keras_file(tmp_path):
    model = _quant_model(2, act_bits=3)
    x = rng.normal(size=(4, 8, 8, 2)).astype(np.float32)
    path = tmp_path / "q.keras"
    model.save(path)
    loaded = keras.saving.load_model(path, safe_mode=True)
    np.testing.assert_allclose(
        loaded.predict(x, verbose=0), model.predict(x, verbose=0), rtol=1e-5, atol=1e-6
    )
    assert loaded.get_layer("qdense").weight_bits == 2 and loaded.get_layer("qrelu").bits == 3


def test_densenet_parameter_counts_match_seed_001():
    assert round(models.densenet(32).count_params() / 1e6, 2) == 7.05
    assert round(models.densenet(12).count_params() / 1e6, 2) == 1.03


def test_densenet_batchnorm_momentum_reaches_every_batchnorm():
    def momenta(**kw):
        net = models.densenet(4, blocks=(2, 2), input_shape=(28, 28, 1), stem="small", **kw)
        return {
            layer.momentum
            for layer in net.layers
            if isinstance(layer, keras.layers.BatchNormalization)
        }

    assert momenta() == {0.99}
    assert momenta(bn_momentum=0.9) == {0.9}


@pytest.mark.parametrize(
    "build,shape",
    [
        (lambda s: models.mnist_cnn(s), (28, 28, 1)),
        (lambda s: models.mlp(s, hidden=(20,)), (28, 28, 1)),
        (lambda s: models.densenet(4, blocks=(2, 2), input_shape=s, stem="small"), (28, 28, 1)),
        (lambda s: models.vgg_teacher(s, width=0.125), (32, 32, 3)),
        (lambda s: models.vgg_teacher(s, width=0.125), (28, 28, 1)),
        (lambda s: models.fitnet_student(s), (28, 28, 1)),
        (lambda s: models.fitnet(s, batch_norm=True), (28, 28, 1)),
        (lambda s: models.plain_cnn(10, s, width=0.25), (32, 32, 3)),
        (lambda s: models.plain_cnn(2, s), (28, 28, 1)),
        (lambda s: models.svhn_cnn(s, weight_bits=2, activation_bits=2, width=0.25), (28, 28, 1)),
    ],
)
def test_builders_output_float32_logits_for_their_input_shape(build, shape):
    keras.config.set_dtype_policy("mixed_float16")
    try:
        model = build(shape)
    finally:
        keras.config.set_dtype_policy("float32")
    out = model(np.zeros((2, *shape), np.float32))
    assert tuple(out.shape) == (2, 10)
    assert keras.backend.standardize_dtype(out.dtype) == "float32"
    assert not isinstance(model.layers[-1], keras.layers.Softmax)
    assert model.layers[-1].activation in (None, keras.activations.linear)


def test_fitnet_taps_line_up():
    teacher, student = models.vgg_teacher(width=0.25), models.fitnet_student()
    assert teacher.get_layer("hint").output.shape[1:3] == (8, 8)
    assert student.get_layer("guided").output.shape[1:3] == (8, 8)
    for shape, size in (((32, 32, 3), (8, 8)), ((28, 28, 1), (7, 7))):
        deep, hint = models.fitnet(shape), models.vgg_teacher(shape, width=0.25).get_layer("hint")
        assert deep.get_layer("guided").output.shape[1:3] == hint.output.shape[1:3] == size


def test_the_deep_thin_student_starts_as_a_pre_batchnorm_network_would():
    keras.utils.set_random_seed(0)
    x = np.random.default_rng(0).uniform(size=(64, 28, 28, 1)).astype(np.float32)
    small, he = models.fitnet((28, 28, 1)), models.fitnet((28, 28, 1), init_std=None)
    convs = [layer for layer in small.layers if isinstance(layer, keras.layers.Conv2D)]
    assert len(convs) == 9 and all(layer.use_bias for layer in convs)
    kernel = np.asarray(convs[4].kernel)
    assert kernel.std() == pytest.approx(0.01, rel=0.1)

    # N(0, 0.01) shrinks the signal layer by layer: the logits barely depend on the image
    def spread(model):  # in training, where BatchNorm normalises by the batch
        return np.asarray(model(x, training=True)).std(axis=0).mean()

    assert spread(small) < 1e-4 * spread(he)
    bn = models.fitnet((28, 28, 1), batch_norm=True)
    norms = [layer for layer in bn.layers if isinstance(layer, keras.layers.BatchNormalization)]
    assert len(norms) == 9 and {layer.momentum for layer in norms} == {0.9}  # forgets its start
    assert spread(bn) > 1e-2 * spread(he)  # BatchNorm undoes the scale of the weights


def test_plain_cnn_depths_and_widths():
    counts = [models.plain_cnn(d).count_params() for d in (2, 4, 6, 8, 10)]
    assert counts == sorted(counts)
    n_convs = [
        sum(isinstance(layer, keras.layers.Conv2D) for layer in models.plain_cnn(d).layers)
        for d in (2, 4, 6, 8, 10)
    ]
    assert n_convs == [2, 4, 6, 8, 10]
    with pytest.raises(ValueError, match="depth must be one of"):
        models.plain_cnn(3)


def test_plain_cnn_batchnorm_forgets_its_start_within_a_few_epochs_of_a_small_student():
    # notebook 04's students take about 30 steps an epoch: after 100 steps the moving variance
    # must be the batches' own, not its start of 1 (at momentum 0.99 it would keep 37 % of it)
    model = models.plain_cnn(2, (28, 28, 1))
    first = next(
        layer for layer in model.layers if isinstance(layer, keras.layers.BatchNormalization)
    )
    conv = keras.Model(model.input, first.input)
    x = np.random.default_rng(0).uniform(0, 1, (64, 28, 28, 1)).astype("float32")
    batch_var = np.asarray(conv(x)).var(axis=(0, 1, 2))
    for _ in range(100):
        model(x, training=True)
    moving = np.asarray(first.moving_variance)
    np.testing.assert_allclose(moving, batch_var, rtol=0.1, atol=0.05 * batch_var.max())
