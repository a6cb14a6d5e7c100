"""ONNX export of encoders: one function does the whole job (graph, checker, parity, metadata, hash).

The exported graph is the encoder's feature path only (`forward_features`): input `image` (N, 3, S, S) float32
RGB in [0, 1], output `representation` (N, C, S/8, S/8), batch axis dynamic. Everything downstream reads the
input spec and the representation shape from the file's metadata, never from code.
"""

from __future__ import annotations

import hashlib
import io
import json
import os
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import onnx
import onnxruntime as ort
import torch
from torch import nn

from taskonomy_db import __version__
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
    example = torch.rand(2, 3, input_size, input_size, generator=torch.Generator().manual_seed(seed))
    buffer = io.BytesIO()
    with warnings.catch_warnings():
        # The TorchScript exporter is deprecated in favour of the dynamo one, which needs onnxscript; the
        # graphs here are plain convolutions, which it exports exactly.
        warnings.simplefilter("ignore")
        torch.onnx.export(
            module,
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
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    tmp.write_bytes(data)
    tmp.replace(path)
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
