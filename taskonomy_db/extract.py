"""Representation extraction (`tdb extract`): run registered ONNX encoders over images into Parquet.

Layout: `representations/<encoder>/part-NNNNN.parquet`, columns `image_id: int32` and
`representation: fixed_size_list<float16 | float32>[C*H*W]` (row-major C, H, W), with key-value metadata
`encoder`, `sha256` (of the ONNX file), `shape` (JSON [C, H, W]) and `dtype`.

Resumable and safe to kill: a part is written to a temporary file and renamed, so it exists whole or not at
all; a rerun reads which images the finished parts hold and extracts only the rest. Parts written by an older
export of the encoder (another sha256) are removed first, and duplicate rows (two runs at once) are compacted,
so the folder ends with exactly one row per image. Memory is bounded by one part.

The store lists every part extraction left (`representation_parts`: file name and row count), so a reader tells
a deleted, truncated or foreign part from an encoder never extracted, and fails naming the fix
(`check_representations`) instead of silently reading less.
"""

from __future__ import annotations

import json
import re
import time
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

import numpy as np
import onnxruntime as ort
import pyarrow as pa
import pyarrow.parquet as pq
from tqdm import tqdm

from taskonomy_db.atomic import atomic_path, remove_stale_temporaries
from taskonomy_db.data import SPLITS, image_rows, load_rgb
from taskonomy_db.encoders import EncoderRecord, check_input_spec, registered_encoder, registered_encoders
from taskonomy_db.errors import DataError, EncoderError
from taskonomy_db.models.export import file_sha256
from taskonomy_db.settings import PROVIDERS
from taskonomy_db.workspace import Workspace

PART_ROWS = 1024
BATCH = 64
DTYPES = {"float16": (np.float16, pa.float16()), "float32": (np.float32, pa.float32())}
_PART = re.compile(r"^part-(\d{5})\.parquet$")
# What pyarrow raises for a truncated or corrupt file (ArrowInvalid, ArrowIOError, ...).
_UNREADABLE = (pa.ArrowException, OSError)
_UNREADABLE_TEXT = "cannot be read as Parquet (truncated or corrupt)"


@dataclass
class ExtractReport:
    encoder: str
    n_images: int  # images of the chosen splits, all now present
    n_extracted: int  # extracted by this run
    n_parts: int
    n_removed_stale: int
    seconds: float
    provider: str

    @property
    def images_per_second(self) -> float:
        return self.n_extracted / self.seconds if self.seconds > 0 else 0.0


def representation_dir(workspace: Workspace, encoder: str) -> Path:
    return workspace.path("representations", encoder)


def _parts(folder: Path) -> list[Path]:
    return sorted(p for p in folder.glob("part-*.parquet") if _PART.match(p.name)) if folder.is_dir() else []


def _metadata(path: Path) -> dict[str, str]:
    raw = pq.read_schema(path).metadata or {}
    return {k.decode(): v.decode() for k, v in raw.items()}


def providers_for(choice: str) -> list[str]:
    """onnxruntime providers for --provider: cuda fails clearly when it is not available."""
    available = ort.get_available_providers()
    if choice not in PROVIDERS:
        raise EncoderError(f"unknown provider {choice!r}; expected {', '.join(PROVIDERS)}")
    if choice == "cuda" and "CUDAExecutionProvider" not in available:
        raise EncoderError(
            "the CUDA provider is not available in this onnxruntime (install onnxruntime-gpu); "
            f"available: {', '.join(available)}"
        )
    if choice in ("cuda", "auto") and "CUDAExecutionProvider" in available:
        return ["CUDAExecutionProvider", "CPUExecutionProvider"]
    return ["CPUExecutionProvider"]


def open_session(
    workspace: Workspace, record: EncoderRecord, provider: str = "auto", threads: int = 0
) -> ort.InferenceSession:
    """An onnxruntime session for a registered encoder, after checking its file hash and input spec."""
    path = workspace.path(record.onnx_path)
    if not path.is_file():
        raise EncoderError(f"encoder {record.encoder}: {path} is missing; re-run `tdb export` or `tdb add-encoder`")
    actual = file_sha256(path)
    if actual != record.sha256:
        raise EncoderError(
            f"encoder {record.encoder}: {record.onnx_path} has sha256 {actual[:12]}..., but the encoders table "
            f"registered {record.sha256[:12]}...; the file changed since registration "
            f"(re-run `tdb export {record.encoder}` or `tdb add-encoder {record.encoder} FILE --replace`)"
        )
    options = ort.SessionOptions()
    options.log_severity_level = 3
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    if threads > 0:
        options.intra_op_num_threads = threads
    session = ort.InferenceSession(str(path), options, providers=providers_for(provider))
    inputs = session.get_inputs()
    if len(inputs) != 1 or inputs[0].name != record.input_name:
        names = ", ".join(i.name for i in inputs)
        raise EncoderError(f"encoder {record.encoder}: expected one input {record.input_name!r}, found {names}")
    dims = [d if isinstance(d, int) else None for d in inputs[0].shape]
    check_input_spec(dims, record.input_size, f"encoder {record.encoder}")
    return session


def extract(
    workspace: Workspace,
    encoders: Sequence[str] | None = None,
    splits: Sequence[str] = SPLITS,
    provider: str = "auto",
    dtype: str = "float16",
    batch_size: int = BATCH,
    part_rows: int = PART_ROWS,
    threads: int = 0,
    progress: bool = True,
) -> list[ExtractReport]:
    """Extract every named encoder (default: every registered one) over the images of `splits`."""
    if dtype not in DTYPES:
        raise EncoderError(f"unknown dtype {dtype!r}; expected {', '.join(DTYPES)}")
    records = [registered_encoder(workspace, n) for n in encoders] if encoders else registered_encoders(workspace)
    if not records:
        raise EncoderError("no registered encoders; run `tdb export` or `tdb add-encoder` first")
    rows = image_rows(workspace, ["rgb"], list(splits))
    if not rows:
        raise DataError(f"no images with an rgb file in splits {', '.join(splits)}")
    image_ids = [int(r["image_id"]) for r in rows]
    sessions = {r.encoder: open_session(workspace, r, provider, threads) for r in records}  # fail before any work
    return [
        _extract_one(workspace, record, sessions[record.encoder], image_ids, dtype, batch_size, part_rows, progress)
        for record in records
    ]


def _extract_one(
    workspace: Workspace,
    record: EncoderRecord,
    session: ort.InferenceSession,
    image_ids: list[int],
    dtype: str,
    batch_size: int,
    part_rows: int,
    progress: bool,
) -> ExtractReport:
    started = time.perf_counter()
    folder = representation_dir(workspace, record.encoder)
    folder.mkdir(parents=True, exist_ok=True)
    remove_stale_temporaries(folder)  # parts torn by a kill; their images are extracted again
    removed, done = _prune(folder, record, dtype)
    _record_parts(workspace, record.encoder, folder)
    todo = [i for i in image_ids if i not in done]
    numbers = [int(_PART.match(p.name).group(1)) for p in _parts(folder)]
    next_part = max(numbers, default=-1) + 1
    normalisation = record.normalisation
    np_dtype, pa_dtype = DTYPES[dtype]
    shape = list(record.representation_shape)
    width = int(np.prod(shape))
    bar = tqdm(total=len(todo), desc=f"extract {record.encoder}", unit="img", disable=None if progress else True)
    for start in range(0, len(todo), part_rows):
        chunk = todo[start : start + part_rows]
        outputs = []
        chunk_rgb = load_rgb(workspace, chunk, record.input_size)
        for offset in range(0, len(chunk), batch_size):
            ids = chunk[offset : offset + batch_size]
            images = chunk_rgb[offset : offset + batch_size].astype(np.float32) / np.float32(255)
            if normalisation is not None:
                images = (images - normalisation[0]) / normalisation[1]
            out = session.run([record.output_name], {record.input_name: images})[0]
            if list(out.shape[1:]) != shape:
                raise EncoderError(
                    f"encoder {record.encoder}: output shape {list(out.shape[1:])} differs from the registered {shape}"
                )
            outputs.append(out.reshape(len(ids), width).astype(np_dtype))
            bar.update(len(ids))
        values = pa.array(np.concatenate(outputs).ravel(), type=pa_dtype)
        table = pa.table(
            {
                "image_id": pa.array(np.asarray(chunk, np.int32), pa.int32()),
                "representation": pa.FixedSizeListArray.from_arrays(values, width),
            }
        )
        part = folder / f"part-{next_part:05d}.parquet"
        _write_part(part, table, record, dtype)
        _record_part(workspace, record.encoder, part.name, table.num_rows)
        next_part += 1
    bar.close()
    return ExtractReport(
        record.encoder,
        len(image_ids),
        len(todo),
        len(_parts(folder)),
        removed,
        time.perf_counter() - started,
        session.get_providers()[0],
    )


def _write_part(path: Path, table: pa.Table, record: EncoderRecord, dtype: str) -> None:
    metadata = {
        "encoder": record.encoder,
        "sha256": record.sha256,
        "shape": json.dumps(list(record.representation_shape)),
        "dtype": dtype,
        "input_size": str(record.input_size),
    }
    table = table.replace_schema_metadata(metadata)
    with atomic_path(path, EncoderError) as tmp:
        pq.write_table(table, tmp)


def _prune(folder: Path, record: EncoderRecord, dtype: str) -> tuple[int, set[int]]:
    """Remove parts of another export or dtype and unreadable ones (truncated, corrupt); compact duplicate rows.
    Returns (parts removed, image ids held)."""
    removed = 0
    seen: set[int] = set()
    for part in _parts(folder):
        try:
            meta = _metadata(part)
            ids = pq.read_table(part, columns=["image_id"]).column("image_id").to_numpy()
        except _UNREADABLE:
            meta = {}
        if meta.get("sha256") != record.sha256 or meta.get("dtype") != dtype:
            part.unlink()
            removed += 1
            continue
        duplicate = np.fromiter((i in seen for i in ids.tolist()), bool, len(ids))
        if duplicate.any():
            table = pq.read_table(part).filter(pa.array(~duplicate))
            if table.num_rows == 0:
                part.unlink()
            else:
                _write_part(part, table, record, dtype)
        seen.update(ids.tolist())
    return removed, seen


def _record_part(workspace: Workspace, encoder: str, part: str, n_rows: int) -> None:
    with workspace.db.transaction() as con:
        con.insert_one(
            "representation_parts",
            {"encoder": encoder, "part": part, "n_rows": n_rows, "recorded_at": datetime.now()},
            replace=True,
        )


def _record_parts(workspace: Workspace, encoder: str, folder: Path) -> None:
    """Make the store's list of the encoder's parts what the folder now holds (all readable: just pruned)."""
    rows = [
        {"encoder": encoder, "part": p.name, "n_rows": pq.read_metadata(p).num_rows, "recorded_at": datetime.now()}
        for p in _parts(folder)
    ]
    with workspace.db.transaction() as con:
        con.replace_rows("representation_parts", rows, encoder=encoder)


def recorded_encoders(workspace: Workspace) -> set[str]:
    """Encoders the store says were extracted (whatever their folders now hold)."""
    table = workspace.db.query("select distinct encoder from representation_parts")
    return set(table.column("encoder").to_pylist())


def check_representations(workspace: Workspace, encoder: str) -> list[Path]:
    """The encoder's parts, after checking the folder against the store's record of what extraction left:
    every recorded part present, readable, with its recorded row count, and no part the store does not list.
    Reads Parquet footers only. Raises EncoderError naming the encoder, the part and the fix."""
    folder = representation_dir(workspace, encoder)
    table = workspace.db.query("select part, n_rows from representation_parts where encoder = ?", [encoder])
    recorded = dict(zip(table.column("part").to_pylist(), table.column("n_rows").to_pylist(), strict=True))
    on_disk = {p.name: p for p in _parts(folder)}
    fix = f"run `tdb extract {encoder}`"
    if not recorded and not on_disk:
        raise EncoderError(f"no representations of {encoder}; {fix}")
    for name, n_rows in sorted(recorded.items()):
        where = f"representations/{encoder}/{name}"
        if name not in on_disk:
            raise EncoderError(f"representations of {encoder} are incomplete: {where} is missing; {fix}")
        try:
            actual = pq.read_metadata(on_disk[name]).num_rows
        except _UNREADABLE as error:
            raise EncoderError(
                f"representations of {encoder} are damaged: {where} {_UNREADABLE_TEXT}; {fix}"
            ) from error
        if actual != n_rows:
            problem = f"holds {actual} rows, extraction wrote {n_rows}"
            raise EncoderError(f"representations of {encoder} are damaged: {where} {problem}; {fix}")
    unknown = sorted(set(on_disk) - set(recorded))
    if unknown:
        raise EncoderError(
            f"representations of {encoder} hold a part the store does not list: representations/{encoder}/"
            f"{unknown[0]} (an interrupted or older `tdb extract`, or copied in); {fix}"
        )
    return [on_disk[name] for name in sorted(on_disk)]


def read_representations(
    workspace: Workspace, encoder: str, image_ids: Sequence[int] | None = None, dtype: type = np.float32
) -> tuple[np.ndarray, np.ndarray]:
    """(image_ids int32 [N], representations [N, C, H, W]) of a registered encoder, sorted by image_id.

    Verifies every part against the encoder's registered sha256 (an EncoderError on a mismatch: the encoder
    was re-exported after extraction) and that no image appears twice. With `image_ids`, returns exactly those
    images and fails if any is missing.
    """
    record = registered_encoder(workspace, encoder)
    parts = check_representations(workspace, encoder)
    wanted = None if image_ids is None else np.asarray(image_ids, np.int32)
    id_chunks, value_chunks = [], []
    for part in parts:
        try:
            meta = _metadata(part)
            table = pq.read_table(part)
        except _UNREADABLE as error:  # a footer intact over damaged pages
            where = part.relative_to(workspace.root)
            raise EncoderError(
                f"representations of {encoder} are damaged: {where} {_UNREADABLE_TEXT}; run `tdb extract {encoder}`"
            ) from error
        if meta.get("sha256") != record.sha256:
            raise EncoderError(
                f"{part.relative_to(workspace.root)} was extracted with encoder sha256 "
                f"{meta.get('sha256', '?')[:12]}..., but {encoder} is registered as {record.sha256[:12]}...; "
                f"re-run `tdb extract {encoder}`"
            )
        ids = table.column("image_id").to_numpy()
        keep = slice(None) if wanted is None else np.isin(ids, wanted)
        flat = table.column("representation").combine_chunks().flatten().to_numpy(zero_copy_only=False)
        values = flat.reshape(len(ids), -1)[keep].astype(dtype, copy=False)
        id_chunks.append(ids[keep])
        value_chunks.append(values)
    ids = np.concatenate(id_chunks).astype(np.int32)
    values = np.concatenate(value_chunks)
    order = np.argsort(ids, kind="stable")
    ids, values = ids[order], values[order]
    if len(ids) > 1 and (np.diff(ids) == 0).any():
        raise EncoderError(f"representations of {encoder} hold an image twice; re-run `tdb extract {encoder}`")
    if wanted is not None and len(ids) != len(np.unique(wanted)):
        missing = np.setdiff1d(wanted, ids)
        raise EncoderError(
            f"{len(missing)} requested images have no representation from {encoder} "
            f"(e.g. image_id {missing[0]}); run `tdb extract {encoder} --splits ...`"
        )
    return ids, values.reshape(len(ids), *record.representation_shape)
