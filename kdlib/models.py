"""Model builders. Every model outputs **logits** (no softmax layer) and takes its input shape
from the data, so the CIFAR-10 / SVHN architectures also build for 28x28x1 images.

``width`` multiplies the number of channels/units of a builder: the ``cpu`` profile uses
narrower versions of the papers' networks. ``augment`` (every builder) puts a
``kdlib.data.Augment`` layer after the input: it augments each training batch on the device and
does nothing at inference. Layers named ``"hint"`` (teacher) and ``"guided"``
(student) are FitNets' taps (see ``kdlib.distill.HintTrainer``).
"""

from __future__ import annotations

from collections.abc import Sequence

import keras
from keras import layers

from kdlib import quant
from kdlib.data import augment as _augment


def _w(n: int, width: float) -> int:
    return max(1, round(n * width))


def _inputs(input_shape, augment: str | None):
    """The model's input and, with ``augment`` (``"jitter"`` or ``"flip_crop"``), the
    augmentation layer on it: active in training only, so the model predicts on clean images."""
    inputs = keras.Input(input_shape)
    if _augment.check(augment) is None:
        return inputs, inputs
    return inputs, _augment.Augment(augment, name="augment")(inputs)


def _head(x, num_classes: int):
    """The logits layer, in float32 under mixed precision (DESIGN.md, "Conventions")."""
    return layers.Dense(num_classes, dtype="float32", name="logits")(x)


def mnist_cnn(
    input_shape=(28, 28, 1),
    num_classes: int = 10,
    *,
    dropout: float = 0.3,
    initializer: str = "glorot_uniform",
    width: float = 1.0,
    augment: str | None = None,
    name: str = "mnist_cnn",
) -> keras.Model:
    """The TF1 ensemble notes' CNN: three conv(3x3)-maxpool-dropout stages (32, 64, 128
    filters), a dense
    layer of 625 units with dropout, and the logits."""
    inputs, x = _inputs(input_shape, augment)
    for filters in (32, 64, 128):
        x = layers.Conv2D(
            _w(filters, width), 3, padding="same", activation="relu", kernel_initializer=initializer
        )(x)
        x = layers.MaxPooling2D(2, padding="same")(x)
        x = layers.Dropout(dropout)(x)
    x = layers.Flatten()(x)
    x = layers.Dense(_w(625, width), activation="relu", kernel_initializer=initializer)(x)
    x = layers.Dropout(dropout)(x)
    return keras.Model(inputs, _head(x, num_classes), name=name)


def mlp(
    input_shape=(28, 28, 1),
    num_classes: int = 10,
    *,
    hidden: Sequence[int] = (1200, 1200),
    dropout: float = 0.0,
    input_dropout: float = 0.0,
    augment: str | None = None,
    name: str = "mlp",
) -> keras.Model:
    """A ReLU multilayer perceptron: Hinton et al.'s MNIST teacher (2x1200, dropout 0.5 on
    hidden units, 0.2 on inputs) and student (2x800, no dropout)."""
    inputs, x = _inputs(input_shape, augment)
    x = layers.Flatten()(x)
    if input_dropout:
        x = layers.Dropout(input_dropout)(x)
    for units in hidden:
        x = layers.Dense(units, activation="relu")(x)
        if dropout:
            x = layers.Dropout(dropout)(x)
    return keras.Model(inputs, _head(x, num_classes), name=name)


# --------------------------------------------------------------------------- DenseNet-BC


# BatchNorm momentum of the networks the course trains for a few hundred steps (FitNets, plain
# CNNs, the SVHN CNN): their moving statistics forget their start (variance 1) within an epoch or
# two, where Keras's 0.99 remembers it for hundreds of steps.
SHORT_RUN_MOMENTUM = 0.9


def _bn_relu_conv(x, filters: int, kernel: int, momentum: float):
    x = layers.BatchNormalization(momentum=momentum)(x)
    x = layers.Activation("relu6")(x)
    return layers.Conv2D(filters, kernel, padding="same")(x)


def densenet(
    growth_rate: int,
    blocks: Sequence[int] = (6, 12, 24, 16),
    compression: float = 0.5,
    bottleneck: bool = True,
    input_shape=(112, 112, 1),
    num_classes: int = 10,
    *,
    stem: str = "imagenet",
    bn_momentum: float = 0.99,
    image_size: int | None = None,
    augment: str | None = None,
    name: str = "densenet",
) -> keras.Model:
    """DenseNet-BC as the DenseNet notebook builds it (DenseNet-121 at the default ``blocks``).

    Each dense layer is BN-ReLU6-conv(1x1, 4k) (the bottleneck) then BN-ReLU6-conv(3x3, k),
    concatenated to its input; transitions are BN, conv(1x1) keeping ``compression`` of the
    channels, and 2x2 average pooling. ``stem="imagenet"``: conv(7x7, 2k, stride 2) and a
    3x3/2 max-pool (the DenseNet notebook's, for 112x112 inputs); ``stem="small"``: conv(3x3,
    2k) and a 2x2 max-pool, for 28x28 or 32x32 inputs. Growth 32 gives that notebook's teacher
    (~7.05 M parameters), growth 12
    its student (~1.03 M).

    ``bn_momentum`` is the BatchNorm layers' moving-average momentum: Keras's 0.99 (the DenseNet
    notebook's) suits long runs; in a run of a few hundred steps the moving statistics lag so
    far behind the weights that the model evaluates near chance for the first epochs and far
    below its training accuracy after them (notebook 02 gives its students 0.9 in every
    profile, and its teacher 0.9 at ``cpu``).

    ``image_size``: resize the input images (bilinear) to this size inside the model, as the
    DenseNet notebook feeds 28x28 MNIST digits to the network at 112x112.
    """
    if stem not in ("imagenet", "small"):
        raise ValueError(f"stem must be 'imagenet' or 'small', got {stem!r}")
    inputs, x = _inputs(input_shape, augment)
    if image_size is not None and (
        isinstance(image_size, bool) or not isinstance(image_size, int) or image_size < 1
    ):
        raise ValueError(f"image_size must be a positive whole number or None, got {image_size!r}")
    if image_size is not None and tuple(input_shape[:2]) != (image_size, image_size):
        x = layers.Resizing(image_size, image_size, name="resize")(x)  # on the device, per batch
    if stem == "imagenet":
        x = layers.Conv2D(2 * growth_rate, 7, strides=2, padding="same")(x)
        x = layers.MaxPooling2D(3, strides=2, padding="same")(x)
    else:
        x = layers.Conv2D(2 * growth_rate, 3, padding="same")(x)
        x = layers.MaxPooling2D(2)(x)
    for i, n_layers in enumerate(blocks):
        for _ in range(n_layers):
            y = _bn_relu_conv(x, 4 * growth_rate, 1, bn_momentum) if bottleneck else x
            y = _bn_relu_conv(y, growth_rate, 3, bn_momentum)
            x = layers.Concatenate()([y, x])
        if i < len(blocks) - 1:
            x = layers.BatchNormalization(momentum=bn_momentum)(x)
            x = layers.Conv2D(int(x.shape[-1] * compression), 1, padding="same")(x)
            x = layers.AveragePooling2D(2, strides=2)(x)
    x = layers.GlobalAveragePooling2D()(x)
    return keras.Model(inputs, _head(x, num_classes), name=name)


# --------------------------------------------------------------------------- FitNets


def vgg_teacher(
    input_shape=(32, 32, 3),
    num_classes: int = 10,
    *,
    width: float = 1.0,
    batch_norm: bool = True,
    augment: str | None = None,
    name: str = "vgg_teacher",
) -> keras.Model:
    """The FitNets notebook's VGG-style teacher: conv 64-64, pool, 128-128, pool, 256x3 (the
    last one's
    ReLU output is the ``"hint"`` layer, 8x8 on CIFAR), pool, dropout 0.4, 512x4, pool, dropout
    0.4, dense 1024-256-64, dropout 0.3, logits.

    ``batch_norm`` (default on) puts BatchNorm between each convolution and its ReLU. That
    notebook's
    network has none: thirteen plain ReLU layers trained from scratch with Adam often stall at
    chance accuracy (every ReLU dead; the course's first ``cpu`` run did exactly that), which
    ``batch_norm=False`` reproduces. Below ``width`` 1 the dense layers keep at least 64 units:
    a 16-unit bottleneck under dropout also kept the narrow teacher at chance."""

    def conv(x, n, name=None):
        x = layers.Conv2D(
            _w(n, width), 3, padding="same", use_bias=not batch_norm, kernel_initializer="he_normal"
        )(x)
        if batch_norm:
            x = layers.BatchNormalization()(x)
        return layers.ReLU(name=name)(x)

    inputs, x = _inputs(input_shape, augment)
    x = layers.MaxPooling2D(2)(conv(conv(x, 64), 64))
    x = layers.MaxPooling2D(2)(conv(conv(x, 128), 128))
    x = conv(conv(conv(x, 256), 256), 256, name="hint")
    x = layers.Dropout(0.4)(layers.MaxPooling2D(2)(x))
    for _ in range(4):
        x = conv(x, 512)
    x = layers.Dropout(0.4)(layers.MaxPooling2D(2, padding="same")(x))
    x = layers.Flatten()(x)
    for units in (1024, 256, 64):
        x = layers.Dense(
            max(64, _w(units, width)), activation="relu", kernel_initializer="he_normal"
        )(x)
    x = layers.Dropout(0.3)(x)
    return keras.Model(inputs, _head(x, num_classes), name=name)


def fitnet_student(
    input_shape=(32, 32, 3),
    num_classes: int = 10,
    *,
    width: float = 1.0,
    augment: str | None = None,
    name: str = "fitnet_student",
) -> keras.Model:
    """The FitNets notebook's small student: conv 16, pool, conv 32, pool (the ``"guided"``
    layer, 8x8 on
    CIFAR), dense 128 with dropout 0.3, logits."""
    inputs, x = _inputs(input_shape, augment)
    x = layers.Conv2D(
        _w(16, width), 3, padding="same", activation="relu", kernel_initializer="he_normal"
    )(x)
    x = layers.MaxPooling2D(2)(x)
    x = layers.Conv2D(_w(32, width), 3, padding="same", activation="relu")(x)
    x = layers.MaxPooling2D(2, name="guided")(x)
    x = layers.Flatten()(x)
    x = layers.Dropout(0.3)(layers.Dense(_w(128, width), activation="relu")(x))
    return keras.Model(inputs, _head(x, num_classes), name=name)


def fitnet(
    input_shape=(32, 32, 3),
    num_classes: int = 10,
    *,
    filters: Sequence[int] = (16, 32, 48),
    per_stage: int = 3,
    batch_norm: bool = False,
    init_std: float | None = 0.01,
    width: float = 1.0,
    augment: str | None = None,
    name: str = "fitnet",
) -> keras.Model:
    """A deep, thin student in the spirit of Romero et al.'s FitNets: three stages of
    ``per_stage`` 3x3 convolutions (``filters`` channels, ReLU), each stage ending in a 2x2
    max-pool; the second stage's pool is the ``"guided"`` layer (8x8 on CIFAR, 7x7 on 28x28
    images, the size of ``vgg_teacher``'s ``"hint"``); then the logits.

    ``init_std``: the convolutions' weights start from N(0, init_std²), as networks did before
    BatchNorm and He's initialisation (0.01, the default; None: He's). At 0.01 each
    convolution shrinks the signal several-fold, so without ``batch_norm`` the nine of the
    default network leave almost nothing of the input at the logits, and almost no gradient at
    the first layers: trained from scratch it stays at chance. FitNets' hint stage trains the
    layers below ``"guided"`` against the teacher's middle layer directly. With ``batch_norm``
    (BatchNorm between each convolution and its ReLU) the scale of the initial weights no
    longer matters. Its moving averages use momentum 0.9: they start at variance 1 while these
    small weights give outputs of variance about 1e-3, and Keras's 0.99 would take the whole of
    a short run to forget the start, so the network would be evaluated (``training=False``)
    with statistics it never had, at chance, while it trains well."""
    init = "he_normal" if init_std is None else keras.initializers.RandomNormal(stddev=init_std)
    inputs, x = _inputs(input_shape, augment)
    for stage, n in enumerate(filters):
        for _ in range(per_stage):
            x = layers.Conv2D(
                _w(n, width), 3, padding="same", use_bias=not batch_norm, kernel_initializer=init
            )(x)
            if batch_norm:
                x = layers.BatchNormalization(momentum=SHORT_RUN_MOMENTUM)(x)
            x = layers.ReLU()(x)
        x = layers.MaxPooling2D(2, padding="same", name="guided" if stage == 1 else None)(x)
    x = layers.Flatten()(x)
    return keras.Model(inputs, _head(x, num_classes), name=name)


# --------------------------------------------------------------------------- TAKD plain CNNs

PLAIN_CNNS = {
    # depth: (conv stages, each a list of filters followed by a 2x2 max-pool), hidden dense units
    2: ([[16], [16]], []),
    4: ([[16, 16], [32, 32]], []),
    6: ([[16, 16], [32, 32], [64, 64]], []),
    8: ([[16, 16], [32, 32], [64, 64], [128, 128]], [64]),
    10: ([[32, 32], [64, 64], [128, 128], [256, 256, 256, 256]], [128]),
}


def plain_cnn(
    depth: int,
    input_shape=(32, 32, 3),
    num_classes: int = 10,
    *,
    width: float = 1.0,
    augment: str | None = None,
    name: str | None = None,
) -> keras.Model:
    """Mirzadeh et al.'s (TAKD) plain CNNs of depth 2, 4, 6, 8 or 10: 3x3 convolutions (pad 1)
    each followed by BatchNorm and ReLU, a 2x2 max-pool after each stage, then the dense
    layers and the logits.

    BatchNorm's moving averages use momentum 0.9: a student of a few thousand images takes some
    30 steps an epoch, and at Keras's 0.99 its first epochs are validated with statistics still
    near their start, so an early epoch can validate better than the next few and stop it."""
    if depth not in PLAIN_CNNS:
        raise ValueError(f"depth must be one of {sorted(PLAIN_CNNS)}, got {depth!r}")
    stages, hidden = PLAIN_CNNS[depth]
    inputs, x = _inputs(input_shape, augment)
    for stage in stages:
        for filters in stage:
            x = layers.Conv2D(_w(filters, width), 3, padding="same", use_bias=False)(x)
            x = layers.ReLU()(layers.BatchNormalization(momentum=SHORT_RUN_MOMENTUM)(x))
        x = layers.MaxPooling2D(2, padding="same")(x)
    x = layers.Flatten()(x)
    for units in hidden:
        x = layers.Dense(_w(units, width), activation="relu")(x)
    return keras.Model(inputs, _head(x, num_classes), name=name or f"plane{depth}")


# ------------------------------------------------------------ SVHN (the quantization homework)


def svhn_cnn(
    input_shape=(32, 32, 3),
    num_classes: int = 10,
    *,
    width: float = 1.0,
    weight_bits: int | None = None,
    activation_bits: int | None = None,
    augment: str | None = None,
    name: str | None = None,
) -> keras.Model:
    """A VGG-style SVHN classifier: conv(3x3)-BN-ReLU stages of 32, 64 and 128 filters (two
    convolutions each, then a 2x2 max-pool), a dense layer of 256 and the logits.

    With ``weight_bits`` its convolutions and hidden dense layer are ``kdlib.quant`` layers
    with k-bit weights (and ``activation_bits``-bit activations): the quantized student. The
    first convolution and the logits layer stay float32, as is usual for quantized networks.
    """
    quantized = weight_bits is not None

    def conv(x, filters, first=False):
        if quantized and not first:
            x = quant.QuantConv2D(
                _w(filters, width), 3, padding="same", use_bias=False, weight_bits=weight_bits
            )(x)
        else:
            x = layers.Conv2D(_w(filters, width), 3, padding="same", use_bias=False)(x)
        x = layers.BatchNormalization(momentum=SHORT_RUN_MOMENTUM)(x)
        if quantized and activation_bits:
            return quant.QuantReLU(activation_bits)(x)
        return layers.ReLU()(x)

    inputs, x = _inputs(input_shape, augment)
    first = True
    for filters in (32, 64, 128):
        x = conv(conv(x, filters, first=first), filters)
        first = False
        x = layers.MaxPooling2D(2, padding="same")(x)
    x = layers.Flatten()(x)
    if quantized:
        x = quant.QuantDense(_w(256, width), weight_bits=weight_bits)(x)
        x = quant.QuantReLU(activation_bits)(x) if activation_bits else layers.ReLU()(x)
    else:
        x = layers.Dense(_w(256, width), activation="relu")(x)
    x = layers.Dropout(0.3)(x)
    default = f"svhn_q{weight_bits}" if quantized else "svhn_cnn"
    return keras.Model(inputs, _head(x, num_classes), name=name or default)
