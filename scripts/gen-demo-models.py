#!/usr/bin/env python3
"""Generates the demo models in models/<name>/<version>/ (model.onnx + manifest.toml).

DEMO MODELS, NOT FOR CLINICAL USE. They exist so the gateway's model
repository, engines and benchmarks have real ONNX files to load and run:

  ct-hyperdensity 1.0.0, 2.0.0  hand-written graph: the fraction of
                                 hyperdense (55-90 HU) pixels among
                                 brain-range (0-100 HU) pixels, through a logistic.
  dx-exposure 1.0.0             hand-written graph: mean and standard deviation
                                 of the normalised image through a 2x3 linear
                                 layer and a softmax (under / ok / over).
  resnet18-demo 1.0.0           ResNet-18 layout at half channel width with
                                 seeded random weights, for cost measurement.
  resnet18-demo 1.1.0           the same network and weights with a dynamic
                                 batch axis ("N"), for dynamic batching.

Fire-drill models, written to tests/fixtures/drill-models (never to the
demo repository that ships: they misbehave on purpose):

  drill-nan 1.0.0               fire drill: a "broken build" that loads and
                                 passes its health check but returns NaN for
                                 any image with a pixel above 0 HU, so
                                 operators can rehearse a fallback.
  drill-slow 1.0.0              fire drill: a few large matrix products that
                                 take about a second per image on one core,
                                 for rehearsing timeouts.

Deterministic: fixed seeds, fixed opset and IR version, fixed producer
fields, so regenerating gives byte-identical files (and so the same SHA-256
in the manifests). `--check` regenerates into a temporary folder and compares
with what is committed, exiting 1 on any difference.

Usage:
  scripts/gen-demo-models.py            write into ./models
  scripts/gen-demo-models.py --check    verify ./models is what this script makes
  scripts/gen-demo-models.py --out DIR  write elsewhere (--drill-out DIR for the drills)

Needs the `onnx` and `numpy` packages (pinned in tests/python/requirements.txt).
"""

import argparse
import filecmp
import hashlib
import math
import os
import sys
import tempfile

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

OPSET = 17
IR_VERSION = 8
PRODUCER_NAME = "dicom-gateway/scripts/gen-demo-models.py"
PRODUCER_VERSION = "1"
MODEL_FILE = "model.onnx"
DEMO_STATEMENT = "DEMO — NOT FOR CLINICAL USE"


def make_model(graph, doc):
    model = helper.make_model(
        graph,
        opset_imports=[helper.make_opsetid("", OPSET)],
        producer_name=PRODUCER_NAME,
        producer_version=PRODUCER_VERSION,
        doc_string=f"{DEMO_STATEMENT}. {doc}",
    )
    model.ir_version = IR_VERSION
    onnx.checker.check_model(model, full_check=True)
    return model


def scalar(name, value):
    return numpy_helper.from_array(np.array(value, dtype=np.float32), name)


# --------------------------------------------------------------------------
# ct-hyperdensity
# --------------------------------------------------------------------------

# Hounsfield ranges. Brain parenchyma is ~20-45 HU, fresh blood ~50-90 HU;
# the "brain range" is wider than the usual 40/80 brain window so that blood
# counts in the denominator too. The hyperdense band starts at 55 rather than
# 50 HU: soft tissue at ~45 HU plus a few HU of noise (as in the load
# generator's head phantom) would otherwise count as blood.
BRAIN_RANGE_HU = (0.0, 100.0)
HYPERDENSE_RANGE_HU = (55.0, 90.0)


def ct_hyperdensity(midpoint, steepness, version):
    """score = sigmoid(steepness * (hyperdense_fraction - midpoint))."""
    x = helper.make_tensor_value_info("image", TensorProto.FLOAT, [1, 1, 256, 256])
    y = helper.make_tensor_value_info("score", TensorProto.FLOAT, [1, 1])
    inits = [
        scalar("brain_low", BRAIN_RANGE_HU[0]),
        scalar("brain_high", BRAIN_RANGE_HU[1]),
        scalar("hyper_low", HYPERDENSE_RANGE_HU[0]),
        scalar("hyper_high", HYPERDENSE_RANGE_HU[1]),
        scalar("epsilon", 1e-6),
        scalar("midpoint", midpoint),
        scalar("steepness", steepness),
    ]
    nodes = [
        helper.make_node("Greater", ["image", "brain_low"], ["above_brain_low"]),
        helper.make_node("Less", ["image", "brain_high"], ["below_brain_high"]),
        helper.make_node("And", ["above_brain_low", "below_brain_high"], ["brain_mask"]),
        helper.make_node("Cast", ["brain_mask"], ["brain_mask_f"], to=TensorProto.FLOAT),
        helper.make_node("Greater", ["image", "hyper_low"], ["above_hyper_low"]),
        helper.make_node("Less", ["image", "hyper_high"], ["below_hyper_high"]),
        helper.make_node("And", ["above_hyper_low", "below_hyper_high"], ["hyper_mask"]),
        helper.make_node("Cast", ["hyper_mask"], ["hyper_mask_f"], to=TensorProto.FLOAT),
        helper.make_node("ReduceMean", ["brain_mask_f"], ["brain_share"], axes=[1, 2, 3], keepdims=1),
        helper.make_node("ReduceMean", ["hyper_mask_f"], ["hyper_share"], axes=[1, 2, 3], keepdims=1),
        helper.make_node("Max", ["brain_share", "epsilon"], ["brain_share_safe"]),
        helper.make_node("Div", ["hyper_share", "brain_share_safe"], ["hyper_fraction"]),
        helper.make_node("Sub", ["hyper_fraction", "midpoint"], ["centred"]),
        helper.make_node("Mul", ["centred", "steepness"], ["logit"]),
        helper.make_node("Sigmoid", ["logit"], ["probability"]),
        helper.make_node("Flatten", ["probability"], ["score"], axis=1),
    ]
    graph = helper.make_graph(nodes, "ct_hyperdensity", [x], [y], initializer=inits)
    return make_model(
        graph,
        f"ct-hyperdensity {version}: sigmoid({steepness} * (fraction of {HYPERDENSE_RANGE_HU} HU "
        f"pixels among {BRAIN_RANGE_HU} HU pixels - {midpoint})).",
    )


def ct_manifest(version, midpoint, steepness, sha256):
    return f'''# {DEMO_STATEMENT}
# Generated by scripts/gen-demo-models.py; edit the script, not this file.
name = "ct-hyperdensity"
version = "{version}"
task = "classification"
demo = true
clinical_use = "{DEMO_STATEMENT}. A hand-written formula, not a trained model; its score means nothing about any patient."
description = "Scores a head CT slice by the share of hyperdense (55-90 HU) pixels among brain-range (0-100 HU) pixels: sigmoid({steepness} * (fraction - {midpoint}))."
intended_use = "Exercising the gateway's inference path end to end on synthetic head CT with and without a hyperdense blob."
limitations = [
    "Not trained on any data and not validated: never use it on patients.",
    "Counts pixels by Hounsfield value only: calcification, contrast, beam hardening and partial volume all move the score.",
    "One axial slice at a time; knows nothing of anatomy or of neighbouring slices.",
]
model_file = "{MODEL_FILE}"
sha256 = "{sha256}"

# The model takes Hounsfield units: the modality LUT is applied, no VOI
# window, no normalisation; the model thresholds HU itself.
[input]
name = "image"
shape = [1, 1, 256, 256]
dtype = "float32"
per_image = "2d"

[preprocessing]
modality_lut = true
resize = [256, 256]
channels = 1
layout = "nchw"

[preprocessing.window]
source = "none"

[preprocessing.normalisation]
kind = "none"

[[outputs]]
name = "score"
shape = [1, 1]
labels = [
    {{ name = "hyperdensity", threshold = 0.5 }},
]
'''


# --------------------------------------------------------------------------
# dx-exposure
# --------------------------------------------------------------------------

# Features are [mean, std] of the image scaled to 0..1 (stored value / 4095).
# Columns: under, ok, over. With the contrast of a typical radiograph
# (std ~0.25), under wins below a mean of ~0.15 and over above ~0.6;
# contrast favours "ok", so a flat grey image is never "ok".
DX_WEIGHTS = np.array([[-40.0, 0.0, 40.0], [0.0, 8.0, 0.0]], dtype=np.float32)
DX_BIAS = np.array([8.8, 0.8, -21.0], dtype=np.float32)


def dx_exposure():
    x = helper.make_tensor_value_info("image", TensorProto.FLOAT, [1, 1, 256, 256])
    y = helper.make_tensor_value_info("probabilities", TensorProto.FLOAT, [1, 3])
    inits = [
        numpy_helper.from_array(DX_WEIGHTS, "weights"),
        numpy_helper.from_array(DX_BIAS, "bias"),
        numpy_helper.from_array(np.array([1, 1], dtype=np.int64), "feature_shape"),
    ]
    nodes = [
        helper.make_node("ReduceMean", ["image"], ["mean"], axes=[1, 2, 3], keepdims=1),
        helper.make_node("Sub", ["image", "mean"], ["deviation"]),
        helper.make_node("Mul", ["deviation", "deviation"], ["squared"]),
        helper.make_node("ReduceMean", ["squared"], ["variance"], axes=[1, 2, 3], keepdims=1),
        helper.make_node("Sqrt", ["variance"], ["std"]),
        helper.make_node("Reshape", ["mean", "feature_shape"], ["mean_feature"]),
        helper.make_node("Reshape", ["std", "feature_shape"], ["std_feature"]),
        helper.make_node("Concat", ["mean_feature", "std_feature"], ["features"], axis=1),
        helper.make_node("Gemm", ["features", "weights", "bias"], ["logits"]),
        helper.make_node("Softmax", ["logits"], ["probabilities"], axis=1),
    ]
    graph = helper.make_graph(nodes, "dx_exposure", [x], [y], initializer=inits)
    return make_model(
        graph,
        "dx-exposure 1.0.0: softmax([mean, std] @ W + b) of the image scaled to 0..1.",
    )


def dx_manifest(sha256):
    return f'''# {DEMO_STATEMENT}
# Generated by scripts/gen-demo-models.py; edit the script, not this file.
name = "dx-exposure"
version = "1.0.0"
task = "classification"
demo = true
clinical_use = "{DEMO_STATEMENT}. A hand-written formula, not a trained model."
description = "Exposure quality of a CR/DX image from two statistics: mean and standard deviation of the stored values scaled to 0..1, through a 2x3 linear layer and a softmax."
intended_use = "Exercising multi-label classification output (under / ok / over) on synthetic radiographs."
limitations = [
    "Not trained on any data and not validated: never use it on patients.",
    "Assumes 12 bits stored (scale 1/4095) and MONOCHROME2; other bit depths or MONOCHROME1 shift every score.",
    "Collimation, markers and body habitus move the mean as much as exposure does.",
]
model_file = "{MODEL_FILE}"
sha256 = "{sha256}"

# Stored values (after the modality LUT, which CR/DX rarely have) scaled by
# 1/4095 to 0..1; no VOI window, which would hide the exposure.
[input]
name = "image"
shape = [1, 1, 256, 256]
dtype = "float32"
per_image = "2d"

[preprocessing]
modality_lut = true
resize = [256, 256]
channels = 1
layout = "nchw"

[preprocessing.window]
source = "none"

[preprocessing.normalisation]
kind = "scale"
scale = 0.00024420024
offset = 0.0

[[outputs]]
name = "probabilities"
shape = [1, 3]
labels = [
    {{ name = "underexposed", threshold = 0.5 }},
    {{ name = "ok", threshold = 0.5 }},
    {{ name = "overexposed", threshold = 0.5 }},
]
'''


# --------------------------------------------------------------------------
# resnet18-demo
# --------------------------------------------------------------------------

# ResNet-18 layout (7x7 stem, max pool, 4 stages of 2 basic blocks, global
# average pool, linear) at half the channel widths: full width would be
# ~45 MB of weights, half width is ~11 MB and ~0.6 GFLOPs instead of ~1.8.
RESNET_WIDTHS = [32, 64, 128, 256]
RESNET_STEM = 32
RESNET_CLASSES = 2
RESNET_SEED = 20261121


class GraphBuilder:
    def __init__(self, seed):
        self.rng = np.random.default_rng(seed)
        self.nodes = []
        self.inits = []
        self.count = 0

    def name(self, prefix):
        self.count += 1
        return f"{prefix}_{self.count}"

    def conv(self, x, cin, cout, kernel, stride, gain=1.0, relu=True):
        """Conv with a folded batch norm (a bias), He-normal weights."""
        w = self.name("conv_w")
        b = self.name("conv_b")
        std = gain * math.sqrt(2.0 / (cin * kernel * kernel))
        weights = (self.rng.standard_normal((cout, cin, kernel, kernel), dtype=np.float32) * np.float32(std))
        bias = (self.rng.standard_normal((cout,), dtype=np.float32) * np.float32(0.01))
        self.inits.append(numpy_helper.from_array(weights.astype(np.float32), w))
        self.inits.append(numpy_helper.from_array(bias.astype(np.float32), b))
        out = self.name("conv")
        pad = kernel // 2
        self.nodes.append(helper.make_node(
            "Conv", [x, w, b], [out],
            kernel_shape=[kernel, kernel], strides=[stride, stride], pads=[pad, pad, pad, pad],
        ))
        if relu:
            activated = self.name("relu")
            self.nodes.append(helper.make_node("Relu", [out], [activated]))
            return activated
        return out

    def basic_block(self, x, cin, cout, stride):
        h = self.conv(x, cin, cout, 3, stride)
        # The second conv is scaled down so the residual sums do not grow
        # without bound through eight blocks (no real batch statistics here).
        h = self.conv(h, cout, cout, 3, 1, gain=0.5, relu=False)
        shortcut = x
        if stride != 1 or cin != cout:
            shortcut = self.conv(x, cin, cout, 1, stride, relu=False)
        summed = self.name("add")
        self.nodes.append(helper.make_node("Add", [h, shortcut], [summed]))
        out = self.name("relu")
        self.nodes.append(helper.make_node("Relu", [summed], [out]))
        return out


def resnet18_demo(version="1.0.0", batch=1):
    """`batch` is the first axis: 1, or "N" for a dynamic batch."""
    g = GraphBuilder(RESNET_SEED)
    x = helper.make_tensor_value_info("image", TensorProto.FLOAT, [batch, 3, 224, 224])
    y = helper.make_tensor_value_info("probabilities", TensorProto.FLOAT, [batch, RESNET_CLASSES])
    h = g.conv("image", 3, RESNET_STEM, 7, 2)
    pooled = g.name("maxpool")
    g.nodes.append(helper.make_node(
        "MaxPool", [h], [pooled], kernel_shape=[3, 3], strides=[2, 2], pads=[1, 1, 1, 1],
    ))
    h, cin = pooled, RESNET_STEM
    for stage, cout in enumerate(RESNET_WIDTHS):
        for block in range(2):
            stride = 2 if stage > 0 and block == 0 else 1
            h = g.basic_block(h, cin, cout, stride)
            cin = cout
    g.nodes.append(helper.make_node("GlobalAveragePool", [h], ["pooled"]))
    g.nodes.append(helper.make_node("Flatten", ["pooled"], ["features"], axis=1))
    fc_w = g.rng.standard_normal((cin, RESNET_CLASSES), dtype=np.float32) * np.float32(math.sqrt(1.0 / cin))
    fc_b = np.zeros((RESNET_CLASSES,), dtype=np.float32)
    g.inits.append(numpy_helper.from_array(fc_w.astype(np.float32), "fc_w"))
    g.inits.append(numpy_helper.from_array(fc_b, "fc_b"))
    g.nodes.append(helper.make_node("Gemm", ["features", "fc_w", "fc_b"], ["logits"]))
    g.nodes.append(helper.make_node("Softmax", ["logits"], ["probabilities"], axis=1))
    graph = helper.make_graph(g.nodes, "resnet18_demo", [x], [y], initializer=g.inits)
    return make_model(
        graph,
        f"resnet18-demo {version}: ResNet-18 layout, widths {RESNET_WIDTHS}, random weights (seed {RESNET_SEED})"
        + (", dynamic batch axis N." if batch == "N" else "."),
    )


def resnet_manifest(sha256, parameters, version="1.0.0", batch=1):
    """`batch` as in resnet18_demo; a dynamic batch is -1 in the manifest."""
    dims = -1 if batch == "N" else 1
    batching = (
        " The first axis of input and output is a dynamic batch (N), so the gateway may stack requests (dynamic batching)."
        if batch == "N" else ""
    )
    return f'''# {DEMO_STATEMENT}
# Generated by scripts/gen-demo-models.py; edit the script, not this file.
name = "resnet18-demo"
version = "{version}"
task = "classification"
demo = true
clinical_use = "{DEMO_STATEMENT}. Random weights: its outputs mean nothing at all."
description = "ResNet-18 layout (7x7 stem, max pool, 4 stages of 2 basic blocks, global average pool, linear, softmax) with batch norm folded into conv biases, at half the channel widths {RESNET_WIDTHS} ({parameters} parameters, ~0.6 GFLOPs; full ResNet-18 is 11.7M and ~1.8 GFLOPs) to keep the file small. Seeded random weights (seed {RESNET_SEED}).{batching}"
intended_use = "Measuring the cost of a realistic convolutional network on the gateway's engines (latency, throughput, memory)."
limitations = [
    "Random weights: the two class probabilities carry no information.",
    "Half the channel widths of ResNet-18, so roughly a third of its compute: scale measured latencies accordingly.",
]
model_file = "{MODEL_FILE}"
sha256 = "{sha256}"

# ImageNet-style input: the VOI window from the file maps to 0..1, then
# per-channel mean/std, the grey image repeated on three channels.
[input]
name = "image"
shape = [{dims}, 3, 224, 224]
dtype = "float32"
per_image = "2d"

[preprocessing]
modality_lut = true
resize = [224, 224]
channels = 3
layout = "nchw"

[preprocessing.window]
source = "from_file"

[preprocessing.normalisation]
kind = "mean_std"
mean = [0.485, 0.456, 0.406]
std = [0.229, 0.224, 0.225]

[[outputs]]
name = "probabilities"
shape = [{dims}, {RESNET_CLASSES}]
labels = [
    {{ name = "class_a", threshold = 0.5 }},
    {{ name = "class_b", threshold = 0.5 }},
]
'''


# --------------------------------------------------------------------------

# --------------------------------------------------------------------------
# fire-drill models: deliberately broken, for rehearsing fallbacks
# --------------------------------------------------------------------------

DRILL_SLOW_PRODUCTS = 8


def drill_nan():
    """score = r - r with r = sqrt(-max(image)): 0 for images at or below
    0 HU (the health check's zeros, pure air), NaN as soon as any pixel is
    tissue. (Not 0 * r: engines may fold a product with zero away.)"""
    x = helper.make_tensor_value_info("image", TensorProto.FLOAT, [1, 1, 256, 256])
    y = helper.make_tensor_value_info("score", TensorProto.FLOAT, [1, 1])
    inits = []
    nodes = [
        helper.make_node("ReduceMax", ["image"], ["peak"], axes=[1, 2, 3], keepdims=1),
        helper.make_node("Neg", ["peak"], ["negated"]),
        helper.make_node("Sqrt", ["negated"], ["root"]),
        helper.make_node("Sub", ["root", "root"], ["flat"]),
        helper.make_node("Flatten", ["flat"], ["score"], axis=1),
    ]
    graph = helper.make_graph(nodes, "drill_nan", [x], [y], initializer=inits)
    return make_model(graph, "drill-nan 1.0.0: r - r with r = sqrt(-max(image)); NaN for any pixel above 0 HU.")


def drill_slow():
    """The image tiled to 2048x2048, then DRILL_SLOW_PRODUCTS products with
    a 2048x2048 averaging matrix (built at load from a scalar, so the file
    stays small; values stay bounded), then sigmoid(mean / 1000)."""
    x = helper.make_tensor_value_info("image", TensorProto.FLOAT, [1, 1, 256, 256])
    y = helper.make_tensor_value_info("score", TensorProto.FLOAT, [1, 1])
    inits = [
        numpy_helper.from_array(np.array([256, 256], dtype=np.int64), "plane"),
        numpy_helper.from_array(np.array([8, 8], dtype=np.int64), "tiles"),
        numpy_helper.from_array(np.array([2048, 2048], dtype=np.int64), "square"),
        scalar("average", 1.0 / 2048.0),
        scalar("scale", 0.001),
    ]
    nodes = [
        helper.make_node("Reshape", ["image", "plane"], ["flat_image"]),
        helper.make_node("Tile", ["flat_image", "tiles"], ["tiled"]),
        helper.make_node("Expand", ["average", "square"], ["averaging"]),
    ]
    previous = "tiled"
    for i in range(DRILL_SLOW_PRODUCTS):
        nodes.append(helper.make_node("MatMul", [previous, "averaging"], [f"product_{i}"]))
        previous = f"product_{i}"
    nodes += [
        helper.make_node("ReduceMean", [previous], ["mean"], axes=[0, 1], keepdims=1),
        helper.make_node("Mul", ["mean", "scale"], ["scaled"]),
        helper.make_node("Sigmoid", ["scaled"], ["score"]),
    ]
    graph = helper.make_graph(nodes, "drill_slow", [x], [y], initializer=inits)
    return make_model(
        graph,
        f"drill-slow 1.0.0: the image tiled to 2048x2048 and multiplied {DRILL_SLOW_PRODUCTS} times "
        "by a 2048x2048 averaging matrix, then a logistic.",
    )


def drill_manifest(name, description, intended_use, limitation, sha256):
    return f'''# {DEMO_STATEMENT}
# Generated by scripts/gen-demo-models.py; edit the script, not this file.
name = "{name}"
version = "1.0.0"
task = "classification"
demo = true
clinical_use = "{DEMO_STATEMENT}. A fire-drill model that misbehaves on purpose; it produces no meaningful result."
description = "{description}"
intended_use = "{intended_use}"
limitations = [
    "Misbehaves on purpose: never route patient studies to it outside a drill.",
    "{limitation}",
]
model_file = "{MODEL_FILE}"
sha256 = "{sha256}"

# Same input as ct-hyperdensity, so it can stand in for it on a CT route.
[input]
name = "image"
shape = [1, 1, 256, 256]
dtype = "float32"
per_image = "2d"

[preprocessing]
modality_lut = true
resize = [256, 256]
channels = 1
layout = "nchw"

[preprocessing.window]
source = "none"

[preprocessing.normalisation]
kind = "none"

[[outputs]]
name = "score"
shape = [1, 1]
labels = [
    {{ name = "drill", threshold = 0.5 }},
]
'''


def write_version(root, name, version, model, manifest_for_sha):
    folder = os.path.join(root, name, version)
    os.makedirs(folder, exist_ok=True)
    data = model.SerializeToString()
    with open(os.path.join(folder, MODEL_FILE), "wb") as f:
        f.write(data)
    sha256 = hashlib.sha256(data).hexdigest()
    with open(os.path.join(folder, "manifest.toml"), "w", encoding="utf-8", newline="\n") as f:
        f.write(manifest_for_sha(sha256))
    return [os.path.join(name, version, MODEL_FILE), os.path.join(name, version, "manifest.toml")]


def generate(root):
    written = []
    for version, midpoint, steepness in [("1.0.0", 0.0015, 2500.0), ("2.0.0", 0.0012, 3000.0)]:
        written += write_version(
            root, "ct-hyperdensity", version, ct_hyperdensity(midpoint, steepness, version),
            lambda sha, v=version, m=midpoint, s=steepness: ct_manifest(v, m, s, sha),
        )
    written += write_version(root, "dx-exposure", "1.0.0", dx_exposure(), dx_manifest)
    resnet = resnet18_demo()
    parameters = sum(int(np.prod(t.dims)) for t in resnet.graph.initializer)
    written += write_version(
        root, "resnet18-demo", "1.0.0", resnet, lambda sha: resnet_manifest(sha, f"{parameters:,}"),
    )
    written += write_version(
        root, "resnet18-demo", "1.1.0", resnet18_demo("1.1.0", batch="N"),
        lambda sha: resnet_manifest(sha, f"{parameters:,}", "1.1.0", batch="N"),
    )
    return written


def generate_drills(root):
    written = []
    written += write_version(
        root, "drill-nan", "1.0.0", drill_nan(),
        lambda sha: drill_manifest(
            "drill-nan",
            "A broken build on purpose: loads, passes its health check on zeros, and returns NaN for any image with a pixel above 0 HU.",
            "Rehearsing a primary model that fails at run time: the gateway must reject its NaN, count the failure against the circuit, and serve the route's fallback.",
            "Answers (with a meaningless 0) only for images with no pixel above 0 HU.",
            sha,
        ),
    )
    written += write_version(
        root, "drill-slow", "1.0.0", drill_slow(),
        lambda sha: drill_manifest(
            "drill-slow",
            f"A slow model on purpose: {DRILL_SLOW_PRODUCTS} products of 2048x2048 matrices per image (about 140 GFLOP), around a second on one core.",
            "Rehearsing a primary model that overruns the route's attempt timeout, so the fallback serves.",
            "Its score is a logistic of a rotated mean: it says nothing about the image.",
            sha,
        ),
    )
    return written


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    repo = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    parser.add_argument("--out", default=os.path.join(repo, "models"))
    parser.add_argument("--drill-out", default=os.path.join(repo, "tests", "fixtures", "drill-models"))
    parser.add_argument("--check", action="store_true",
                        help="regenerate into a temporary folder and compare with --out")
    args = parser.parse_args()
    targets = [(generate, args.out), (generate_drills, args.drill_out)]
    if not args.check:
        for make, out in targets:
            for path in make(out):
                print(os.path.join(out, path))
        return 0
    differ = []
    for make, out in targets:
        with tempfile.TemporaryDirectory() as scratch:
            for path in make(scratch):
                committed = os.path.join(out, path)
                if not os.path.exists(committed) or not filecmp.cmp(
                    os.path.join(scratch, path), committed, shallow=False
                ):
                    differ.append(os.path.join(out, path))
    for path in differ:
        print(f"differs from a fresh generation: {path}", file=sys.stderr)
    if differ:
        return 1
    print(f"demo models in {args.out} and {args.drill_out} are byte-identical to a fresh generation")
    return 0


if __name__ == "__main__":
    sys.exit(main())
