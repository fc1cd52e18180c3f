"""Training throughput of the ways to distil, on the same teacher, student and data, on any
Keras backend and device.

(a) the student trained alone (``compile`` + ``fit``); (b) the ``Distiller`` with an online
teacher; (c) the ``Distiller`` with cached teacher logits; the teacher's inference alone, since
(b) can at best cost (a) plus that; and, on TensorFlow, (d) the Colab teacher-student
notebook's loop, which calls ``teacher.predict`` on every batch.

Each figure is measured ``--repeats`` times after a warm-up epoch (whose extra time over a
measured epoch is reported as the compile time) and printed as the median and the range: this
project's CPU machine shares its host, and single timings vary by up to 2x. Targets: (c) <=
1.10 x (a) in time; (b) <= 1.1 x ((a) + teacher inference); (a)-(c) at least 10 x faster than
(d). Random images of the pair's size: speed does not depend on the pixel values.

    python benchmarks/distill_throughput.py [--pair mlp|cnn|densenet] [--n 12000] [--batch 128]
        [--repeats 5] [--precision float32|mixed_float16|mixed_bfloat16]
        [--precisions [POLICY ...]] [--student-growth 16]

``--precisions`` times the student alone's training step under each dtype policy named (all
three if none is) instead. On JAX it also prints the step's arithmetic as XLA counts it before
fusion (floating-point operations and bytes moved) and the rates the measured step achieves:
set beside the device's peak, they say whether a step is bound by arithmetic, by memory or by
neither (then by kernel count, launch overhead or poorly shaped kernels). ``--student-growth``
changes the DenseNet student's growth rate: 16 keeps every channel count a multiple of 8, the
shapes half-precision tensor cores want, where 12 does not.
"""

from __future__ import annotations

import argparse
import functools
import time

# isort: off
import kdlib  # first: it quiets TensorFlow's start-up log before Keras imports TensorFlow
import keras
import numpy as np

from kdlib import data, distill, models, train
# isort: on

PAIRS = {  # name: (input shape, teacher builder, student builder, what it is)
    "mlp": ((28, 28, 1), functools.partial(models.mlp, hidden=(1200, 1200), dropout=0.5),
            functools.partial(models.mlp, hidden=(800, 800)),
            "Hinton et al.'s 2x1200 -> 2x800 MLPs (notebook 01)"),
    "cnn": ((28, 28, 1), functools.partial(models.mnist_cnn, width=1.0),
            functools.partial(models.mnist_cnn, width=0.25),
            "the ensemble notes' CNN at width 1 -> 0.25"),
    "densenet": ((112, 112, 1), functools.partial(models.densenet, 32, input_shape=(112, 112, 1)),
                 functools.partial(models.densenet, 12, input_shape=(112, 112, 1)),
                 "the DenseNet notebook's DenseNet-121, growth 32 -> 12, at 112x112"),
}  # fmt: skip
POLICIES = ("float32", "mixed_float16", "mixed_bfloat16")


def timings(step, repeats: int) -> tuple[float, np.ndarray]:
    """Run ``step()`` once to warm up, then ``repeats`` times; return (warm-up seconds, seconds
    of each timed run)."""
    start = time.perf_counter()
    step()
    warmup = time.perf_counter() - start
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        step()
        times.append(time.perf_counter() - start)
    return warmup, np.array(times)


def seed002_loop(teacher, student, x, y, batch, temperature, alpha, steps):
    """The Colab notebook's training loop (its bugs kept where they cost time: a predict per
    batch)."""
    import tensorflow as tf

    opt = keras.optimizers.Adam(1e-3)
    ce = keras.losses.SparseCategoricalCrossentropy(from_logits=True)
    kl = keras.losses.KLDivergence()
    rng = np.random.default_rng(0)
    for _ in range(steps):
        idx = rng.integers(0, len(x), batch)
        xb = x[idx].astype("float32") / 255.0
        t_pred = teacher.predict(xb, verbose=0)
        with tf.GradientTape() as tape:
            s_pred = student(xb)
            loss = alpha * ce(y[idx], s_pred) + (1 - alpha) * kl(
                tf.nn.softmax(t_pred / temperature, axis=1),
                tf.nn.softmax(s_pred / temperature, axis=1),
            )
        grads = tape.gradient(loss, student.trainable_variables)
        opt.apply_gradients(zip(grads, student.trainable_variables))


def report(
    name: str, warmup: float, times: np.ndarray, images: int, baseline: float | None
) -> float:
    """Print one method's line; return its median seconds per image."""
    per_image = times / images
    med = float(np.median(per_image))
    ratio = f"{med / baseline:5.2f}" if baseline else "     "
    print(
        f"{name:<44}{1 / med:>10,.0f} img/s  "
        f"({1 / per_image.max():,.0f}–{1 / per_image.min():,.0f})"
        f"  {ratio}  compile {max(warmup - float(np.median(times)), 0):5.1f} s",
        flush=True,
    )
    return med


def step_cost(model, batch: int) -> tuple[float, float] | None:
    """(floating-point operations, bytes accessed) of one training step of ``model`` on a batch
    of ``batch``, as XLA's cost analysis counts them in the step's HLO before fusion (so the
    bytes are an upper bound); None off JAX. The step is the loss's value and gradient, as
    ``fit`` computes them; the optimizer's update is a few operations per weight, left out."""
    if keras.backend.backend() != "jax":
        return None
    import jax

    def loss(trainable, non_trainable, x, y):
        logits, updates = model.stateless_call(trainable, non_trainable, x, training=True)
        losses = keras.losses.sparse_categorical_crossentropy(y, logits, from_logits=True)
        return keras.ops.mean(losses), updates

    x = jax.ShapeDtypeStruct((batch, *model.input_shape[1:]), "float32")
    y = jax.ShapeDtypeStruct((batch,), "int32")
    trainable = [v.value for v in model.trainable_variables]
    non_trainable = [v.value for v in model.non_trainable_variables]
    lowered = jax.jit(jax.value_and_grad(loss, has_aux=True)).lower(trainable, non_trainable, x, y)
    cost = lowered.cost_analysis()
    return float(cost["flops"]), float(cost["bytes accessed"])


def precisions(args, shape, student_build) -> None:
    """Step time of the student alone under each dtype policy in ``args.precisions``, and on
    JAX the arithmetic rate and memory traffic that time implies."""
    rng = np.random.default_rng(0)
    x = rng.integers(0, 256, (args.n, *shape), dtype=np.uint8)
    y = rng.integers(0, 10, args.n)
    batches = data.Batches(x, y, args.batch, shuffle=True)
    print(f"{'policy':<20}{'ms / step (median, range)':>34}")
    for policy in args.precisions or POLICIES:
        keras.config.set_dtype_policy(policy)
        model = train.compile_classifier(student_build(name="student"))
        warmup, times = timings(
            lambda m=model: m.fit(batches, epochs=1, verbose=0, shuffle=False), args.repeats
        )
        ms = 1000 * times / len(batches)
        line = (
            f"{policy:<20}{np.median(ms):>14.1f}  ({ms.min():.1f}–{ms.max():.1f})   "
            f"compile {max(warmup - np.median(times), 0):.1f} s"
        )
        cost = step_cost(model, args.batch)
        if cost is not None:
            seconds = float(np.median(ms)) / 1000
            line += (
                f"   XLA count: {cost[0] / 1e9:.1f} GFLOP, {cost[1] / 1e9:.2f} GB a step"
                f" -> {cost[0] / seconds / 1e12:.2f} TFLOP/s, {cost[1] / seconds / 1e9:.0f} GB/s"
            )
        print(line, flush=True)
    keras.config.set_dtype_policy("float32")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--pair", choices=sorted(PAIRS), default="mlp")
    parser.add_argument("--n", type=int, default=12000, help="training images per timed epoch")
    parser.add_argument("--batch", type=int, default=128)
    parser.add_argument(
        "--repeats", type=int, default=5, help="timed epochs per method (after a warm-up)"
    )
    parser.add_argument("--precision", default="float32", choices=POLICIES)
    parser.add_argument(
        "--precisions",
        nargs="*",
        choices=POLICIES,
        help="time the student alone's step under these dtype policies (all if none is named)",
    )
    parser.add_argument(
        "--loop-steps", type=int, default=40, help="timed steps of the Colab notebook's loop"
    )
    parser.add_argument(
        "--student-growth",
        type=int,
        help="the DenseNet student's growth rate instead of 12 (with --pair densenet)",
    )
    args = parser.parse_args()
    if args.student_growth is not None and args.pair != "densenet":
        parser.error("--student-growth applies to --pair densenet only")
    info = kdlib.device.setup(
        0,
        mixed_precision={
            "float32": "off",
            "mixed_float16": "float16",
            "mixed_bfloat16": "bfloat16",
        }[args.precision],
        verbose=False,
    )
    shape, teacher_build, student_build, what = PAIRS[args.pair]
    if args.student_growth is not None:
        student_build = functools.partial(models.densenet, args.student_growth, input_shape=shape)
        what += f" (student at growth {args.student_growth})"
    print(
        f"{what} · backend {info['backend']} on {', '.join(info['devices'])} · {info['policy']} · "
        f"{args.n:,} images per epoch, batch {args.batch}, median of {args.repeats} epochs",
        flush=True,
    )
    if args.precisions is not None:
        precisions(args, shape, student_build)
        return

    rng = np.random.default_rng(0)
    x = rng.integers(0, 256, (args.n, *shape), dtype=np.uint8)
    y = rng.integers(0, 10, args.n)
    batches = data.Batches(x, y, args.batch, shuffle=True)
    teacher = teacher_build(name="teacher")
    print("computing the teacher's logits for the cached path ...", flush=True)
    logits = distill.predict_logits(teacher, data.Batches(x, y, 512))
    cached = data.Batches(x, y, args.batch, shuffle=True, teacher_logits=logits)

    def epochs_of(model, dataset):
        return lambda: model.fit(dataset, epochs=1, verbose=0, shuffle=False)

    print(f"\n{'method':<44}{'images/s (median, range)':>26}  × (a)")
    alone = train.compile_classifier(student_build(name="student"))
    a = report(
        "(a) student alone, fit", *timings(epochs_of(alone, batches), args.repeats), args.n, None
    )
    online = distill.Distiller(student_build(name="student"), teacher, temperature=4.0, alpha=0.9)
    online.compile(train.make_optimizer("adam", 1e-3))
    b = report(
        "(b) Distiller, online teacher",
        *timings(epochs_of(online, batches), args.repeats),
        args.n,
        a,
    )
    offline = distill.Distiller(student_build(name="student"), temperature=4.0, alpha=0.9)
    offline.compile(train.make_optimizer("adam", 1e-3))
    c = report(
        "(c) Distiller, cached logits",
        *timings(epochs_of(offline, cached), args.repeats),
        args.n,
        a,
    )
    inference = report(
        "teacher inference (predict)",
        *timings(lambda: teacher.predict(batches, verbose=0), args.repeats),
        args.n,
        a,
    )
    d = None
    if keras.backend.backend() == "tensorflow":
        student = student_build(name="student")
        steps = args.loop_steps
        warmup, times = timings(
            lambda: seed002_loop(teacher, student, x, y, args.batch, 4.0, 0.5, steps),
            max(2, args.repeats // 2),
        )
        d = report("(d) the Colab notebook's loop", warmup, times, steps * args.batch, a)

    print("\ntargets (medians):")
    print(
        f"  (c) <= 1.10 x (a):                      {c / a:.2f}  "
        f"{'met' if c <= 1.10 * a else 'NOT met'}"
    )
    floor = a + inference
    print(
        f"  (b) <= 1.1 x ((a) + teacher inference):  {b / floor:.2f}  "
        f"{'met' if b <= 1.1 * floor else 'NOT met'}"
    )
    if d is not None:
        slowest = max(a, b, c)
        print(
            f"  (d) / slowest of (a)-(c) >= 10:          {d / slowest:.1f}  "
            f"{'met' if d >= 10 * slowest else 'NOT met'}"
        )


if __name__ == "__main__":
    main()
