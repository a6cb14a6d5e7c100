"""The `encoders` table: every ONNX encoder usable as a transfer source, with its file hash and input spec.

Three kinds: `task` (a gold-standard network's encoder, written by `tdb export`), `random` (the same
architecture at random initialisation, the paper's `random` source) and `user` (any ONNX image encoder
registered with `tdb add-encoder`, e.g. a pretrained backbone to compare against).
"""

from __future__ import annotations

import json
import math
import shutil
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

import numpy as np
import onnx
import onnxruntime as ort
import torch

from taskonomy_db.atomic import atomic_path
from taskonomy_db.data import image_size
from taskonomy_db.errors import EncoderError, UnknownTaskError
from taskonomy_db.models.export import PREPROCESSING, ExportedEncoder, export_encoder, file_sha256
from taskonomy_db.models.networks import build_encoder
from taskonomy_db.names import NETWORK_BASELINES, RANDOM
from taskonomy_db.tasks import get_task, list_tasks, resolve_tasks, sync_tasks
from taskonomy_db.training import checkpoint_path, load_gold_network, network_config, network_sha256, train_settings
from taskonomy_db.workspace import Workspace


@dataclass(frozen=True)
class EncoderRecord:
    """One row of the `encoders` table."""

    encoder: str
    kind: str
    task: str | None
    onnx_path: str  # relative to the workspace root
    sha256: str
    input_name: str
    output_name: str
    input_size: int
    preprocessing: str  # JSON: layout, channels, range, optional mean/std
    representation_shape: tuple[int, ...]
    parity_max_abs_diff: float | None
    registered_at: datetime | None = None
    skipped: bool = False  # export found it up to date

    @property
    def normalisation(self) -> tuple[np.ndarray, np.ndarray] | None:
        """Per-channel (mean, std) to apply to [0, 1] RGB before the graph, or None."""
        spec = json.loads(self.preprocessing)
        if "mean" not in spec and "std" not in spec:
            return None
        mean = np.asarray(spec.get("mean", [0.0, 0.0, 0.0]), np.float32).reshape(1, 3, 1, 1)
        std = np.asarray(spec.get("std", [1.0, 1.0, 1.0]), np.float32).reshape(1, 3, 1, 1)
        return mean, std


def _record(workspace: Workspace, row: dict[str, Any]) -> EncoderRecord:
    return EncoderRecord(**{**row, "representation_shape": tuple(row["representation_shape"])})


def registered_encoders(workspace: Workspace) -> list[EncoderRecord]:
    rows = workspace.db.query("select * from encoders order by registered_at, encoder").to_pylist()
    return [_record(workspace, r) for r in rows]


def registered_encoder(workspace: Workspace, name: str) -> EncoderRecord:
    rows = workspace.db.query("select * from encoders where encoder = ?", [name]).to_pylist()
    if not rows:
        known = ", ".join(r.encoder for r in registered_encoders(workspace)) or "none yet"
        hint = f"run `tdb export {name}`" if name in list_tasks() or name == RANDOM else "see `tdb add-encoder`"
        raise UnknownTaskError(f"no registered encoder {name!r} ({hint}); registered: {known}")
    return _record(workspace, rows[0])


def _store(workspace: Workspace, record: EncoderRecord) -> EncoderRecord:
    record = EncoderRecord(**{**record.__dict__, "registered_at": datetime.now(), "skipped": False})
    values = {k: v for k, v in record.__dict__.items() if k != "skipped"}
    values["representation_shape"] = list(record.representation_shape)
    with workspace.db.transaction() as con:
        con.insert_one("encoders", values, replace=True)
    return record


def _from_export(name: str, kind: str, task: str | None, workspace: Workspace, out: ExportedEncoder) -> EncoderRecord:
    return EncoderRecord(
        encoder=name,
        kind=kind,
        task=task,
        onnx_path=str(out.path.relative_to(workspace.root)),
        sha256=out.sha256,
        input_name=out.input_name,
        output_name=out.output_name,
        input_size=out.input_size,
        preprocessing=out.preprocessing,
        representation_shape=out.representation_shape,
        parity_max_abs_diff=out.parity_max_abs_diff,
    )


def _up_to_date(workspace: Workspace, name: str, source_digest: str) -> EncoderRecord | None:
    """The registered encoder when its file is intact and was exported from the same source."""
    rows = workspace.db.query("select * from encoders where encoder = ?", [name]).to_pylist()
    if not rows:
        return None
    record = _record(workspace, rows[0])
    path = workspace.path(record.onnx_path)
    if not path.is_file() or file_sha256(path) != record.sha256:
        return None
    props = {p.key: p.value for p in onnx.load(str(path), load_external_data=False).metadata_props}
    if props.get("source_sha256") != source_digest:
        return None
    return EncoderRecord(**{**record.__dict__, "skipped": True})


# ---------------------------------------------------------------- export


def export_task_encoder(workspace: Workspace, task: str, force: bool = False) -> EncoderRecord:
    """Export the trained encoder of `task` to models/<task>.onnx and register it (skipped when up to date)."""
    spec = get_task(task)
    network, config = load_gold_network(workspace, task)  # raises a clear error when untrained
    source = network_sha256(network)
    if not force and (current := _up_to_date(workspace, task, source)) is not None:
        return current
    metadata = {
        "encoder": task,
        "kind": "task",
        "task": task,
        "task_group": spec.group,
        "network_config": config.as_dict(),
        "source_sha256": source,
    }
    out = export_encoder(network.encoder, workspace.path("models", f"{task}.onnx"), config.input_size, metadata)
    return _store(workspace, _from_export(task, "task", task, workspace, out))


def export_random_encoder(workspace: Workspace, force: bool = False) -> EncoderRecord:
    """The `random` source: the gold architecture at random init, seeded by the study. The architecture is that
    of the trained networks (read from a checkpoint), else the [train] settings."""
    config = network_config(train_settings(workspace))
    for spec in resolve_tasks(None):
        if checkpoint_path(workspace, spec.name).is_file():
            config = load_gold_network(workspace, spec.name)[1]
            break
    seed = workspace.seed
    source = json.dumps({"config": config.as_dict(), "seed": seed}, sort_keys=True)
    if not force and (current := _up_to_date(workspace, RANDOM, source)) is not None:
        return current
    torch.manual_seed(seed)
    encoder = build_encoder(config).eval()
    metadata = {"encoder": RANDOM, "kind": RANDOM, "network_config": config.as_dict(), "source_sha256": source}
    out = export_encoder(encoder, workspace.path("models", f"{RANDOM}.onnx"), config.input_size, metadata)
    return _store(workspace, _from_export(RANDOM, RANDOM, None, workspace, out))


def export_encoders(
    workspace: Workspace, tasks: list[str] | tuple[str, ...] | None = None, force: bool = False
) -> list[EncoderRecord]:
    """Export the named tasks' encoders (default: every trained task, plus `random`).

    Naming `random` among the tasks exports it; with no names it is always included.
    """
    names = list(tasks or [])
    want_random = not names or RANDOM in names
    names = [n for n in names if n != RANDOM]
    if names:
        specs = resolve_tasks(names)
    else:
        specs = [s for s in resolve_tasks(None) if checkpoint_path(workspace, s.name).is_file()]
        if not specs:
            raise UnknownTaskError("no trained tasks to export; run `tdb train` first")
    sync_tasks(workspace)
    records = [export_task_encoder(workspace, spec.name, force) for spec in specs]
    if want_random:
        records.append(export_random_encoder(workspace, force))
    return records


# ---------------------------------------------------------------- user encoders


def _graph_input(model: onnx.ModelProto) -> onnx.ValueInfoProto:
    initializers = {i.name for i in model.graph.initializer}
    inputs = [i for i in model.graph.input if i.name not in initializers]
    if len(inputs) != 1:
        raise EncoderError(f"an encoder needs exactly one input, the image; this graph has {len(inputs)}")
    return inputs[0]


def _dims(value: onnx.ValueInfoProto) -> list[int | None]:
    return [d.dim_value if d.HasField("dim_value") else None for d in value.type.tensor_type.shape.dim]


def check_input_spec(dims: list[int | None], input_size: int, where: str) -> None:
    """The image input must be NCHW float RGB; a static spatial size must equal `input_size`."""
    if len(dims) != 4:
        raise EncoderError(f"{where}: the input has rank {len(dims)}; expected images as (N, 3, H, W)")
    if dims[1] not in (None, 3):
        raise EncoderError(
            f"{where}: the input takes {dims[1]} channels, but the dataset's images are RGB (3 channels, NCHW)"
        )
    for axis, name in ((2, "height"), (3, "width")):
        if dims[axis] not in (None, input_size):
            raise EncoderError(
                f"{where}: the input's {name} is {dims[axis]}, but the registered input size is {input_size}"
            )


def representation_problem(shape: tuple[int, ...], size: int) -> str | None:
    """Why a representation of `shape` (without the batch axis) cannot feed the transfer readouts at `size`-pixel
    labels, or None: the readout convolves a square feature map and pixel-shuffles it up to the label size."""
    if len(shape) != 3:
        return f"gives a {'x'.join(map(str, shape))} output; transfers need a feature map (C, H, W)"
    _, height, width = shape
    if height != width:
        return f"gives a {height}x{width} map; transfers need a square one"
    if size % height:
        return f"gives a {height}x{width} map, whose side does not divide the {size}-pixel labels"
    return None


def add_encoder(
    workspace: Workspace,
    name: str,
    onnx_file: Path | str,
    input_size: int | None = None,
    mean: tuple[float, float, float] | None = None,
    std: tuple[float, float, float] | None = None,
    output_name: str | None = None,
    replace: bool = False,
) -> EncoderRecord:
    """Register a user's ONNX image encoder as a transfer source; the file is copied to models/<name>.onnx.

    The input spec comes from the flags, else the file's metadata (input_size, preprocessing), else its static
    input shape. The representation shape is measured by running one image through it.
    """
    source = Path(onnx_file)
    if not name or not all(c.isalnum() or c in "_-" for c in name):
        raise EncoderError(f"encoder name {name!r}: use letters, digits, '_' and '-'")
    if name in list_tasks() or name == RANDOM:
        raise EncoderError(f"{name!r} is the name of a task's encoder; choose another name")
    if name in NETWORK_BASELINES:
        raise EncoderError(
            f"{name!r} names a baseline in the transfer store (the Quality and Gain reference); choose another name"
        )
    exists = workspace.db.query("select count(*) as n from encoders where encoder = ?", [name]).to_pylist()[0]["n"]
    if exists and not replace:
        raise EncoderError(f"encoder {name!r} is already registered; pass --replace to register the new file")
    if not source.is_file():
        raise EncoderError(f"ONNX file not found: {source}")
    try:
        model = onnx.load(str(source))
        onnx.checker.check_model(model)
    except Exception as error:  # onnx raises several unrelated types for unreadable files
        raise EncoderError(f"{source} is not a valid ONNX model: {' '.join(str(error).split())[:300]}") from error
    graph_input = _graph_input(model)
    dims = _dims(graph_input)
    if len(dims) == 4 and dims[1] not in (None, 3) and dims[3] == 3:
        raise EncoderError(f"{source}: the input is channels-last {tuple(dims)}; images go in as (N, 3, H, W)")
    props = {p.key: p.value for p in model.metadata_props}
    if input_size is None and "input_size" in props:
        input_size = int(props["input_size"])
    if input_size is None and len(dims) == 4 and dims[2] is not None and dims[2] == dims[3]:
        input_size = dims[2]
    if input_size is None:
        raise EncoderError(f"{source}: the input size is not fixed in the graph or its metadata; pass --input-size")
    check_input_spec(dims, input_size, str(source))
    if dims[0] is not None:
        raise EncoderError(
            f"{source}: the input's batch axis is fixed at {dims[0]}; export it with a dynamic batch axis"
            " (torch.onnx.export(..., dynamic_axes={input_name: {0: 'batch'}}))"
        )
    preprocessing = dict(PREPROCESSING)
    if "preprocessing" in props:
        try:
            preprocessing.update(json.loads(props["preprocessing"]))
        except json.JSONDecodeError:
            pass
    if mean is not None:
        preprocessing["mean"] = list(mean)
    if std is not None:
        preprocessing["std"] = list(std)
    for key in ("mean", "std"):
        values = preprocessing.get(key)
        if values is None:
            continue
        try:
            numbers = [float(v) for v in values]
        except (TypeError, ValueError):
            numbers = []
        if len(numbers) != 3 or not all(math.isfinite(v) for v in numbers):
            raise EncoderError(f"{source}: preprocessing {key} must be three finite numbers (R,G,B), got {values!r}")
        if key == "std" and min(numbers) <= 0:
            raise EncoderError(f"{source}: preprocessing std must be greater than 0 for every channel, got {values!r}")

    outputs = [o.name for o in model.graph.output]
    output = output_name or outputs[0]
    if output not in outputs:
        raise EncoderError(f"{source} has no output {output!r}; outputs: {', '.join(outputs)}")
    options = ort.SessionOptions()
    options.log_severity_level = 3
    try:
        session = ort.InferenceSession(str(source), options, providers=["CPUExecutionProvider"])
        # Two images: a batch size fixed inside the graph (a reshape to 1) fails here, not in `tdb extract`.
        probe = np.full((2, 3, input_size, input_size), 0.5, np.float32)
        shape = tuple(int(d) for d in session.run([output], {graph_input.name: probe})[0].shape[1:])
    except Exception as error:
        message = " ".join(str(error).split())[:300]
        raise EncoderError(
            f"{source} does not run on a batch of (2, 3, {input_size}, {input_size}): {message}"
        ) from error
    problem = representation_problem(shape, image_size(workspace))
    if problem:
        raise EncoderError(f"{source} {problem}")

    target = workspace.path("models", f"{name}.onnx")
    target.parent.mkdir(parents=True, exist_ok=True)
    with atomic_path(target) as tmp:
        shutil.copyfile(source, tmp)
    record = EncoderRecord(
        encoder=name,
        kind="user",
        task=None,
        onnx_path=str(target.relative_to(workspace.root)),
        sha256=file_sha256(target),
        input_name=graph_input.name,
        output_name=output,
        input_size=input_size,
        preprocessing=json.dumps(preprocessing, sort_keys=True),
        representation_shape=shape,
        parity_max_abs_diff=None,
    )
    return _store(workspace, record)
