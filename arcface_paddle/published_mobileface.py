"""Faithfulness proof: the published PaddlePaddle MobileFace weights in our `MobileFaceNet_128`.

The published model (`mobileface_v1.0_infer`) is a legacy inference program (`inference.pdmodel`
+ combined `inference.pdiparams`). Paddle 3 reads that format only with the PIR API off, a
switch that must be set before paddle is imported, so a child process loads it and hands back
the graph's parameter-bearing ops in execution order (JSON) and their tensors (npz). They are
matched one to one, in order, with our layers: kind, shape, stride, padding, groups and BN
epsilon must all agree, every one of our tensors must be filled exactly once, and any other op
in the graph must be one we expect. Anything else stops the import.

The check then runs the published model through `paddle.inference` (the runtime's predictor)
and ours in dynamic mode on the same real faces: embeddings and LFW accuracy side by side.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import paddle
from paddle import nn
from prettytable import PrettyTable

from insightface_paddle.errors import InsightFaceError
from insightface_paddle.predictor import PredictorOptions, create_predictor

from .backbones.mobilefacenet import Bottleneck, MobileFaceNet, MobileFaceNet_128
from .data.verification_bin import (
    MIN_PAIRS,
    VerificationSet,
    check_usable_verification_set,
    load_verification_bin,
)
from .errors import ArcFaceError, require_output_file
from .evaluation.bin_eval import EmbedFn, embed_views, paddle_layer_embed_fn
from .evaluation.verification import pair_cosine, ten_fold_accuracy
from .weights import layer_arrays, save_weights

MODEL_FILE = "inference.pdmodel"
PARAMS_FILE = "inference.pdiparams"
#: the published model's acceptance thresholds (issue 4)
MAX_EMBEDDING_DIFF = 1e-4
MAX_ACCURACY_DIFF = 1e-3

#: legacy op type -> our kind, and the op inputs that hold its tensors
PARAMETER_OPS = {
    "conv2d": ("conv", ("Filter",)),
    "depthwise_conv2d": ("conv", ("Filter",)),
    "batch_norm": ("batch_norm", ("Scale", "Bias", "Mean", "Variance")),
    "prelu": ("prelu", ("Alpha",)),
}
#: other ops the published graph may hold: I/O, residual adds and the final flatten
STRUCTURAL_OPS = {"feed", "fetch", "elementwise_add", "reshape2", "scale"}
#: our tensor names per kind, in the order of PARAMETER_OPS' inputs
OUR_TENSORS = {
    "conv": ("weight",),
    "batch_norm": ("weight", "bias", "_mean", "_variance"),
    "prelu": ("_weight",),
}
OP_ATTRS = ("strides", "paddings", "dilations", "groups", "padding_algorithm", "data_format",
            "epsilon", "data_layout", "mode", "scale", "bias")


def _dump_legacy_model(model_dir: str, out_dir: str) -> None:
    """Child-process side (FLAGS_enable_pir_api=0): graph ops -> graph.json, tensors -> npz."""
    paddle.enable_static()
    executor = paddle.static.Executor(paddle.CPUPlace())
    program, feeds, fetches = paddle.static.load_inference_model(
        str(Path(model_dir) / "inference"), executor)
    block = program.global_block()
    scope = paddle.static.global_scope()
    ops, tensors = [], {}
    for op in block.ops:
        attrs = {name: op.attr(name) for name in OP_ATTRS if op.has_attr(name)}
        record: dict[str, Any] = {"type": op.type, "attrs": attrs, "tensors": {}}
        for slot in PARAMETER_OPS.get(op.type, (None, ()))[1]:
            name = op.input(slot)[0]
            key = f"t{len(tensors)}"
            tensors[key] = np.array(scope.find_var(name).get_tensor())
            record["tensors"][slot] = {"key": key, "name": name}
        ops.append(record)
    feed_shapes = {name: list(block.var(name).shape) for name in feeds}
    graph = {"ops": ops, "feeds": feed_shapes, "fetches": [v.name for v in fetches]}
    Path(out_dir, "graph.json").write_text(json.dumps(graph))
    np.savez(Path(out_dir, "tensors.npz"), **tensors)


@dataclass
class LegacyOp:
    type: str
    attrs: dict[str, Any]
    #: input slot -> (legacy variable name, value)
    tensors: dict[str, tuple[str, np.ndarray]] = field(default_factory=dict)


def read_legacy_model(model_dir: str | os.PathLike[str]) -> tuple[list[LegacyOp], dict]:
    """A legacy inference model -> (ops in execution order, {"feeds": ..., "fetches": ...})."""
    model_dir = Path(model_dir)
    for name in (MODEL_FILE, PARAMS_FILE):
        if not (model_dir / name).is_file():
            raise ArcFaceError(f"{model_dir}: no {name} (expected a legacy Paddle inference model)")
    package_root = str(Path(__file__).resolve().parents[1])
    env = dict(os.environ, FLAGS_enable_pir_api="0", GLOG_minloglevel="2",
               PYTHONPATH=os.pathsep.join(filter(None, [package_root,
                                                       os.environ.get("PYTHONPATH")])))
    code = ("import sys; from arcface_paddle.published_mobileface import _dump_legacy_model; "
            "_dump_legacy_model(sys.argv[1], sys.argv[2])")
    with tempfile.TemporaryDirectory(prefix="legacy_model_") as out_dir:
        child = subprocess.run([sys.executable, "-c", code, str(model_dir), out_dir], env=env,
                               capture_output=True, text=True)
        if child.returncode != 0:
            lines = child.stderr.strip().splitlines() or [f"exit code {child.returncode}"]
            raise ArcFaceError(f"{model_dir}: cannot read the legacy model ({lines[-1]})")
        graph = json.loads(Path(out_dir, "graph.json").read_text())
        with np.load(Path(out_dir, "tensors.npz"), allow_pickle=False) as arrays:
            ops = [LegacyOp(op["type"], op["attrs"],
                            {slot: (ref["name"], arrays[ref["key"]])
                             for slot, ref in op["tensors"].items()})
                   for op in graph["ops"]]
    return ops, {"feeds": graph["feeds"], "fetches": graph["fetches"]}


def _our_parameter_layers(model: nn.Layer) -> list[tuple[str, str, nn.Layer]]:
    """(kind, state-dict prefix, layer) of every conv / BN / PReLU, in forward order (our
    layers are declared in the order they run)."""
    kinds = ((nn.Conv2D, "conv"), (nn.BatchNorm2D, "batch_norm"), (nn.PReLU, "prelu"))
    found = []
    for prefix, layer in model.named_sublayers():
        for layer_type, kind in kinds:
            if isinstance(layer, layer_type):
                found.append((kind, prefix, layer))
    return found


def _check_op_matches(index: int, op: LegacyOp, kind: str, prefix: str, layer: nn.Layer) -> None:
    """Raise unless the legacy op computes what our layer computes."""
    where = f"published op {index} ({op.type}) vs {prefix}"
    expected: dict[str, Any] = {}
    if kind == "conv":
        pad = [int(p) for p in layer._padding] if isinstance(layer._padding, (list, tuple)) \
            else [int(layer._padding)] * 2
        pads = op.attrs["paddings"]
        if len(pads) == 4:  # [top, bottom, left, right]: only symmetric pads can match ours
            if pads[0] != pads[1] or pads[2] != pads[3]:
                raise ArcFaceError(f"{where}: asymmetric paddings {pads}")
            pads = [pads[0], pads[2]]
        expected = {"strides": list(layer._stride), "dilations": list(layer._dilation),
                    "groups": layer._groups, "paddings": pad}
        actual = {"strides": op.attrs["strides"], "dilations": op.attrs["dilations"],
                  "groups": op.attrs["groups"], "paddings": pads}
        if op.attrs.get("padding_algorithm", "EXPLICIT") != "EXPLICIT":
            raise ArcFaceError(f"{where}: padding_algorithm {op.attrs['padding_algorithm']}")
        if op.attrs.get("data_format", "NCHW") not in ("NCHW", "AnyLayout"):
            raise ArcFaceError(f"{where}: data_format {op.attrs['data_format']}")
    elif kind == "batch_norm":
        if not np.isclose(op.attrs["epsilon"], layer._epsilon, rtol=1e-6, atol=0):
            raise ArcFaceError(f"{where}: epsilon {op.attrs['epsilon']} != {layer._epsilon}")
        actual = {"data_layout": op.attrs.get("data_layout", "NCHW")}
        expected = {"data_layout": "NCHW"}
    elif kind == "prelu":
        actual, expected = {"mode": op.attrs.get("mode")}, {"mode": "channel"}
    if actual != expected:
        raise ArcFaceError(f"{where}: attributes {actual} != ours {expected}")


def map_legacy_parameters(ops: Sequence[LegacyOp], model: MobileFaceNet) -> dict[str, np.ndarray]:
    """Published ops -> our state dict, by position with every check; raises ArcFaceError."""
    unknown = sorted({op.type for op in ops} - set(PARAMETER_OPS) - STRUCTURAL_OPS)
    if unknown:
        raise ArcFaceError(f"published graph has ops MobileFaceNet does not: {', '.join(unknown)}")
    for op in ops:
        if op.type == "scale" and (op.attrs.get("scale") != 1.0 or op.attrs.get("bias") != 0.0):
            raise ArcFaceError(f"published graph rescales its output ({op.attrs})")
    residuals = sum(1 for layer in model.sublayers() if isinstance(layer, Bottleneck)
                    and layer.residual)
    adds = sum(1 for op in ops if op.type == "elementwise_add")
    if adds != residuals:
        raise ArcFaceError(f"published graph has {adds} residual adds, MobileFaceNet {residuals}")

    theirs = [(i, op) for i, op in enumerate(ops) if op.type in PARAMETER_OPS]
    ours = _our_parameter_layers(model)
    if len(theirs) != len(ours):
        raise ArcFaceError(f"published graph has {len(theirs)} conv/BN/PReLU ops, "
                           f"MobileFaceNet {len(ours)}")
    shapes = {name: list(value.shape) for name, value in model.state_dict().items()}
    state: dict[str, np.ndarray] = {}
    for (index, op), (kind, prefix, layer) in zip(theirs, ours, strict=True):
        their_kind, slots = PARAMETER_OPS[op.type]
        if their_kind != kind:
            raise ArcFaceError(f"published op {index} is {op.type}, our {prefix} is a {kind}")
        _check_op_matches(index, op, kind, prefix, layer)
        for slot, tensor in zip(slots, OUR_TENSORS[kind], strict=True):
            name = f"{prefix}.{tensor}"
            legacy_name, value = op.tensors[slot]
            if name not in shapes or list(value.shape) != shapes[name]:
                raise ArcFaceError(f"published {legacy_name} {list(value.shape)} does not fit "
                                   f"{name} {shapes.get(name)}")
            if value.dtype != np.float32 or not np.all(np.isfinite(value)):
                raise ArcFaceError(f"published {legacy_name}: not finite float32")
            state[name] = value
    missing = sorted(set(shapes) - set(state))
    if missing:
        raise ArcFaceError(f"no published tensor for {', '.join(missing)}")
    return state


def import_published_mobileface(model_dir: str | os.PathLike[str]) -> MobileFaceNet:
    """The published MobileFace as our MobileFaceNet_128, in eval mode."""
    ops, io = read_legacy_model(model_dir)
    feed_shapes = list(io["feeds"].values())
    if len(feed_shapes) != 1 or feed_shapes[0][1:] != [3, 112, 112]:
        raise ArcFaceError(f"{model_dir}: expected one input [N, 3, 112, 112], got {io['feeds']}")
    model = MobileFaceNet_128()
    model.set_state_dict({k: paddle.to_tensor(v) for k, v in map_legacy_parameters(
        ops, model).items()})
    model.eval()
    return model


def published_embed_fn(model_dir: str | os.PathLike[str], enable_mkldnn: bool = False) -> EmbedFn:
    """The published model through `paddle.inference` as an EmbedFn; plain CPU kernels unless
    `enable_mkldnn` (oneDNN is ~4x faster here and differs by ~1e-6)."""
    try:
        options = PredictorOptions(enable_mkldnn=enable_mkldnn, backend="paddle")
        predictor = create_predictor(Path(model_dir), options)
    except InsightFaceError as exc:
        raise ArcFaceError(str(exc)) from None
    name = predictor.input_names[0]
    return lambda batch: predictor.run({name: batch})[0]


@dataclass(frozen=True)
class FaithfulnessReport:
    images_compared: int
    max_abs_diff: float
    pairs: int
    flip: bool
    published_accuracy: float
    ours_accuracy: float

    @property
    def accuracy_diff(self) -> float:
        return abs(self.published_accuracy - self.ours_accuracy)

    @property
    def passed(self) -> bool:
        return (self.max_abs_diff <= MAX_EMBEDDING_DIFF
                and self.accuracy_diff <= MAX_ACCURACY_DIFF)

    def table(self, set_name: str) -> str:
        table = PrettyTable(["model", f"{set_name} accuracy ({self.pairs} pairs"
                             f"{', flip' if self.flip else ''})",
                             f"max |embedding diff| ({self.images_compared} faces)"])
        table.add_row(["published (paddle.inference)", f"{self.published_accuracy:.5f}", "-"])
        table.add_row(["MobileFaceNet_128 (ours)", f"{self.ours_accuracy:.5f}",
                       f"{self.max_abs_diff:.3g}"])
        return table.get_string()

    def as_dict(self) -> dict[str, Any]:
        return {"images_compared": self.images_compared, "max_abs_diff": self.max_abs_diff,
                "pairs": self.pairs, "flip": self.flip,
                "published_accuracy": self.published_accuracy,
                "ours_accuracy": self.ours_accuracy, "accuracy_diff": self.accuracy_diff,
                "passed": self.passed}


def compare_with_published(model: nn.Layer, published: EmbedFn, vset: VerificationSet,
                           compare_images: int = 200, pairs: int | None = None,
                           batch_size: int = 64, flip: bool = True) -> FaithfulnessReport:
    """Embeddings of the first `compare_images` faces (no flip) and the accuracy of both models
    on the first `pairs` pairs of `vset` (all by default) with the same preprocessing; each
    face is embedded once per model and view."""
    pairs = len(vset.issame) if pairs is None else min(pairs, len(vset.issame))
    compare_images = min(compare_images, len(vset.images))
    images = list(vset.images[:max(compare_images, 2 * pairs)])
    views = [embed_views(fn, images, batch_size, flip, vset.name)
             for fn in (published, paddle_layer_embed_fn(model))]
    max_diff = np.max(np.abs(views[0][0][:compare_images] - views[1][0][:compare_images]))
    issame = np.asarray(vset.issame[:pairs])
    accuracies = [ten_fold_accuracy(pair_cosine(
        (plain if mirrored is None else plain + mirrored)[:2 * pairs]), issame).accuracy
        for plain, mirrored in views]
    return FaithfulnessReport(compare_images, float(max_diff), pairs, flip, *accuracies)


def import_and_verify(model_dir: str | os.PathLike[str], bin_path: str | os.PathLike[str],
                      output: str | os.PathLike[str] | None = None, compare_images: int = 200,
                      pairs: int | None = None, batch_size: int = 64, flip: bool = True,
                      enable_mkldnn: bool = False,
                      say: Callable[[str], None] | None = None) -> FaithfulnessReport:
    """Import the published weights, compare them with the published model on `bin_path`, and
    save them (npz) to `output` only when the comparison passes: a file there is a proven one.

    Everything that can fail without the models is checked first (the output path, the set, the
    flags); `say` receives one line with the work ahead and its estimated duration (measured on
    one batch), since the full LFW comparison takes most of an hour on 2 CPU cores."""
    if output is not None:
        require_output_file(output, "--output")
    if batch_size < 1 or compare_images < 1:
        raise ArcFaceError(f"--batch_size and --compare_images must be at least 1, got "
                           f"{batch_size} and {compare_images}")
    if pairs is not None and pairs < MIN_PAIRS:
        raise ArcFaceError(f"--pairs {pairs}: the 10-fold protocol needs at least {MIN_PAIRS}")
    vset = load_verification_bin(bin_path)
    check_usable_verification_set(vset)
    model = import_published_mobileface(model_dir)
    published = published_embed_fn(model_dir, enable_mkldnn)
    if say is not None:
        say(_plan(model, published, vset, compare_images, pairs, batch_size, flip))
    report = compare_with_published(model, published, vset, compare_images, pairs, batch_size,
                                    flip)
    if output is not None and report.passed:
        save_weights(output, layer_arrays(model), "MobileFaceNet_128", 128)
    return report


def _plan(model: nn.Layer, published: EmbedFn, vset: VerificationSet, compare_images: int,
          pairs: int | None, batch_size: int, flip: bool) -> str:
    """'comparing on N pairs ...: about M min' from timing one batch through both models."""
    pairs = len(vset.issame) if pairs is None else min(pairs, len(vset.issame))
    faces = min(max(compare_images, 2 * pairs), len(vset.images))
    sample = vset.images[:min(batch_size, faces)]
    start = time.perf_counter()
    for fn in (published, paddle_layer_embed_fn(model)):
        embed_views(fn, sample, batch_size, flip, f"{vset.name} (timing)")
    seconds = (time.perf_counter() - start) * faces / len(sample)
    quicker = "" if pairs <= 600 else "; --pairs 600 checks a tenth of it"
    return (f"comparing both models on {pairs} {vset.name} pairs ({faces} faces"
            f"{', flip' if flip else ''}): about {max(1, round(seconds / 60))} min{quicker}")
