"""ONNX export of encoders: one function does the whole job (graph, checker, parity, metadata, hash).

The exported graph is the encoder's feature path only (`forward_features`): input `image` (N, 3, S, S) float32
RGB in [0, 1], output `representation` (N, C, S/8, S/8), batch axis dynamic. Everything downstream reads the
input spec and the representation shape from the file's metadata, never from code.
"""

from __future__ import annotations

import copy
import hashlib
import io
import json
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import onnx
import onnxruntime as ort
import torch
import torch.nn.functional as F
from torch import nn

from taskonomy_db import __version__
from taskonomy_db.atomic import atomic_path
from taskonomy_db.errors import ExportError
from taskonomy_db.workspace import git_commit

INPUT_NAME = "image"
OUTPUT_NAME = "representation"
OPSET = 17
PARITY_TOLERANCE = 1e-4
PARITY_BATCH = 4
# What every encoder exported here expects; user encoders may state other mean/std in their metadata.
PREPROCESSING = {"layout": "NCHW", "channels": "RGB", "dtype": "float32", "range": [0.0, 1.0], "resize": "area"}


@dataclass(frozen=True)
class ExportedEncoder:
    path: Path
    sha256: str
    input_name: str
    output_name: str
    input_size: int
    preprocessing: str
    representation_shape: tuple[int, ...]
    parity_max_abs_diff: float


def file_sha256(path: Path | str) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


class _Features(nn.Module):
    """Wraps a module's feature path so the exported graph stops at the representation."""

    def __init__(self, encoder: nn.Module) -> None:
        super().__init__()
        self.encoder = encoder

    def forward(self, image: torch.Tensor) -> torch.Tensor:
        return self.encoder(image)


class _GroupNormAsLayerNorm(nn.Module):
    """Group norm as LayerNormalization over each group's (channels, height, width) followed by the per-channel
    affine: the same function, but it exports to onnxruntime's fused single-kernel LayerNormalization, where the
    exporter's own form for group_norm (InstanceNormalization between reshapes) costs more passes over memory.
    The static sizes are fine: an encoder's input size is fixed, only the batch axis is dynamic."""

    def __init__(self, norm: nn.GroupNorm, channels: int, height: int, width: int) -> None:
        super().__init__()
        self.groups, self.eps = norm.num_groups, norm.eps
        self.shape = (channels, height, width)
        self.group_size = channels // norm.num_groups * height * width
        self.weight = nn.Parameter(norm.weight.detach().view(-1, 1, 1).clone())
        self.bias = nn.Parameter(norm.bias.detach().view(-1, 1, 1).clone())

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        grouped = F.layer_norm(x.reshape(-1, self.groups, self.group_size), (self.group_size,), eps=self.eps)
        return grouped.reshape(-1, *self.shape) * self.weight + self.bias


@torch.no_grad()
def inference_form(encoder: nn.Module, input_size: int) -> nn.Module:
    """The same function as `encoder`, rewritten for the exported graph: input preprocessing folded into the
    first convolution where the encoder offers it, group norms in the LayerNormalization form. The parity check
    compares the exported graph with the original encoder, so any rewrite that changed the function would fail."""
    rewritten = encoder.with_input_folded() if hasattr(encoder, "with_input_folded") else copy.deepcopy(encoder)
    rewritten.eval()
    shapes: dict[nn.Module, tuple[int, ...]] = {}
    hooks = [
        module.register_forward_hook(lambda m, _i, out: shapes.__setitem__(m, tuple(out.shape[1:])))
        for module in rewritten.modules()
        if isinstance(module, nn.GroupNorm)
    ]
    rewritten(torch.zeros(1, 3, input_size, input_size))
    for hook in hooks:
        hook.remove()
    for parent in list(rewritten.modules()):
        for name, child in list(parent.named_children()):
            if isinstance(child, nn.GroupNorm) and child.affine and len(shapes.get(child, ())) == 3:
                setattr(parent, name, _GroupNormAsLayerNorm(child, *shapes[child]))
    return rewritten


def export_encoder(
    encoder: nn.Module,
    path: Path,
    input_size: int,
    metadata: dict[str, Any],
    seed: int = 0,
) -> ExportedEncoder:
    """Export `encoder` (eval mode) to `path` atomically; check the graph and its parity with PyTorch.

    Raises ExportError when onnx.checker rejects the graph or onnxruntime differs from PyTorch by more than
    PARITY_TOLERANCE on random inputs (nothing is left at `path` then).
    """
    module = _Features(encoder).eval()
    graph = _Features(inference_form(encoder.eval(), input_size)).eval()
    example = torch.rand(2, 3, input_size, input_size, generator=torch.Generator().manual_seed(seed))
    buffer = io.BytesIO()
    with warnings.catch_warnings():
        # The TorchScript exporter is deprecated in favour of the dynamo one, which needs onnxscript; the
        # graphs here are plain convolutions, which it exports exactly.
        warnings.simplefilter("ignore")
        torch.onnx.export(
            graph,
            (example,),
            buffer,
            input_names=[INPUT_NAME],
            output_names=[OUTPUT_NAME],
            dynamic_axes={INPUT_NAME: {0: "batch"}, OUTPUT_NAME: {0: "batch"}},
            opset_version=OPSET,
            dynamo=False,
        )
    model = onnx.load_from_string(buffer.getvalue())
    with torch.no_grad():
        representation_shape = tuple(module(example).shape[1:])
    preprocessing = json.dumps(PREPROCESSING, sort_keys=True)
    props = {
        **{k: v if isinstance(v, str) else json.dumps(v, sort_keys=True) for k, v in metadata.items()},
        "input_name": INPUT_NAME,
        "output_name": OUTPUT_NAME,
        "input_size": str(input_size),
        "representation_shape": json.dumps(list(representation_shape)),
        "preprocessing": preprocessing,
        "commit": git_commit(),
        "taskonomy_db_version": __version__,
    }
    onnx.helper.set_model_props(model, props)
    model.producer_name = "taskonomy-db"
    try:
        onnx.checker.check_model(model, full_check=True)
    except onnx.checker.ValidationError as error:
        raise ExportError(f"onnx.checker rejected the exported graph: {error}") from error

    data = model.SerializeToString()
    max_diff = parity(module, data, input_size, seed)
    if not max_diff <= PARITY_TOLERANCE:
        raise ExportError(f"onnxruntime differs from PyTorch by {max_diff:.3g} > {PARITY_TOLERANCE} ({path.name})")
    path.parent.mkdir(parents=True, exist_ok=True)
    with atomic_path(path) as tmp:
        tmp.write_bytes(data)
    return ExportedEncoder(
        path=path,
        sha256=hashlib.sha256(data).hexdigest(),
        input_name=INPUT_NAME,
        output_name=OUTPUT_NAME,
        input_size=input_size,
        preprocessing=preprocessing,
        representation_shape=representation_shape,
        parity_max_abs_diff=max_diff,
    )


@torch.no_grad()
def parity(module: nn.Module, onnx_bytes: bytes, input_size: int, seed: int = 0) -> float:
    """Max abs difference between onnxruntime and PyTorch on PARITY_BATCH random images (a batch size other
    than the export example's, which also proves the batch axis is dynamic)."""
    images = torch.rand(PARITY_BATCH, 3, input_size, input_size, generator=torch.Generator().manual_seed(seed + 1))
    expected = module(images).numpy()
    options = ort.SessionOptions()
    options.log_severity_level = 3
    session = ort.InferenceSession(onnx_bytes, options, providers=["CPUExecutionProvider"])
    actual = session.run([OUTPUT_NAME], {INPUT_NAME: images.numpy()})[0]
    if actual.shape != expected.shape:
        return float("inf")
    return float(np.abs(actual - expected).max())
