"""Gold networks end to end on a tiny generated dataset: the task registry, training, ONNX export, Parquet
extraction, user encoders, and the bad inputs each step must refuse. Parametrised over the task registry, so a
newly registered task is tested with no extra work."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
import warnings
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import onnx
import onnxruntime as ort
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import torch
from click.testing import CliRunner

from taskonomy_db.cli import cli
from taskonomy_db.data import load_task_data
from taskonomy_db.encoders import add_encoder, export_encoders, registered_encoder
from taskonomy_db.errors import EncoderError, UnknownTaskError
from taskonomy_db.extract import extract, read_representations, representation_dir
from taskonomy_db.generate import generate
from taskonomy_db.ingest import ingest_generated
from taskonomy_db.models.networks import NetworkConfig, build_encoder, create_task_network
from taskonomy_db.tasks import get_task, list_tasks
from taskonomy_db.training import load_gold_network, train_tasks
from taskonomy_db.workspace import Workspace
from tests.conftest import hand_edit

SIZE = 32
TASKS = [t for t in list_tasks() if get_task(t).n_views == 1]  # the multi-image ones: test_multi_image.py
TRAIN = {"image_size": SIZE, "epochs": 1, "width": 8, "batch_size": 8, "threads": 1}


pytestmark = pytest.mark.usefixtures("one_torch_thread")


@pytest.fixture(scope="module")
def dataset(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("generated") / "data"
    generate(root, n_buildings=4, rooms_per_building=1, points_per_room=2, views_per_point=3, size=SIZE,
             workers=1, progress=False)  # fmt: skip
    return root


@pytest.fixture(scope="module")
def workspace(tmp_path_factory, dataset: Path) -> Workspace:
    """Trained for one epoch, exported and extracted: what the parametrised checks inspect. Shared by the module,
    so no test may change it: a test that writes to it, or would if what it checks regressed, takes `own_copy`."""
    workspace = Workspace.init(tmp_path_factory.mktemp("ws") / "study")
    workspace.update_settings("train", TRAIN)
    ingest_generated(workspace, dataset)
    train_tasks(workspace, TASKS, progress=False)
    export_encoders(workspace)
    extract(workspace, progress=False, part_rows=10)
    return workspace


@pytest.fixture
def own_copy(workspace: Workspace, tmp_path: Path) -> Workspace:
    """A private copy of the module's workspace (13 MB, tens of ms): no test reads what another changed."""
    root = tmp_path / "study"
    shutil.copytree(workspace.root, root)
    return Workspace.open(root)


def image_ids(workspace: Workspace) -> list[int]:
    return [r["image_id"] for r in workspace.db.query("select image_id from images order by 1").to_pylist()]


# ---------------------------------------------------------------- registry


def test_registry_covers_the_generated_domains_and_self_supervised_tasks():
    expected = {
        "depth_zbuffer", "depth_euclidean", "normal", "reshading", "principal_curvature", "edge_texture",
        "edge_occlusion", "keypoints2d", "keypoints3d", "segment_semantic", "segment_unsup2d", "segment_unsup25d",
        "class_object", "class_scene", "autoencoding", "denoising", "colorization", "inpainting", "jigsaw",
    }  # fmt: skip
    assert expected <= set(TASKS)
    assert "rgb" not in TASKS
    assert {get_task(t).group for t in TASKS} == {"3D", "2D", "geometric", "semantic"}
    assert set(list_tasks(role="source")) - set(list_tasks(role="target")) == {"colorization", "inpainting", "jigsaw"}


def test_registry_refuses_duplicates_and_unknown_names():
    from taskonomy_db.tasks import register_task

    with pytest.raises(ValueError, match="already registered"):
        register_task(get_task("normal"))
    with pytest.raises(UnknownTaskError, match="unknown task 'nope'"):
        get_task("nope")


@pytest.mark.parametrize("task", TASKS)
def test_loss_is_per_image_and_masked(task: str, workspace: Workspace):
    spec = get_task(task)
    data = load_task_data(workspace, task, ["train"], size=SIZE, progress=False)
    batch = data.batch(torch.arange(4), train=False)
    network = create_task_network(spec, NetworkConfig(input_size=SIZE, width=8))
    losses = spec.loss(network(batch.inputs), batch.targets, batch.masks)
    assert losses.shape == (4,) and torch.isfinite(losses).all()
    again = data.batch(torch.arange(4), train=False)  # evaluation inputs are reproducible per image
    assert torch.equal(batch.inputs, again.inputs) and torch.equal(batch.targets, again.targets)
    if spec.masked_by_depth:
        assert batch.masks is not None and batch.masks.dtype == torch.bool


@pytest.mark.parametrize("task", ["normal", "segment_semantic", "class_scene"])
def test_decoded_and_cached_data_are_identical_down_to_memory_layout(task: str, dataset: Path, tmp_path: Path):
    # A channels-last tensor trains different weights (oneDNN rounds differently), so a run that decoded its
    # data and a resumed run reading the cache must see the same layout, not just the same values.
    workspace = Workspace.init(tmp_path / "ws")
    ingest_generated(workspace, dataset)
    fresh = load_task_data(workspace, task, size=SIZE, progress=False)
    cached = load_task_data(workspace, task, size=SIZE, progress=False)
    for name in ("rgb", "labels", "masks"):
        a, b = getattr(fresh, name), getattr(cached, name)
        if a is None:
            assert b is None
            continue
        assert a.is_contiguous() and b.is_contiguous(), name
        assert a.dtype == b.dtype and torch.equal(a, b), name


@pytest.mark.slow
@pytest.mark.parametrize("task", TASKS)
def test_training_steps_decrease_the_loss(task: str, workspace: Workspace):
    spec = get_task(task)
    data = load_task_data(workspace, task, ["train"], size=SIZE, progress=False)
    torch.manual_seed(0)
    network = create_task_network(spec, NetworkConfig(input_size=SIZE, width=8))
    optimizer = torch.optim.Adam(network.parameters(), lr=3e-3)
    rows = torch.arange(min(8, len(data)))
    batch = data.batch(rows, train=False)  # one fixed batch: the loss on it must fall
    losses = []
    for _ in range(15):
        loss = spec.loss(network(batch.inputs), batch.targets, batch.masks).mean()
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        losses.append(loss.item())
    assert np.mean(losses[-3:]) < losses[0]


# ---------------------------------------------------------------- train


def test_train_stores_epochs_results_and_checkpoints(workspace: Workspace):
    results = workspace.db.query("select * from gold_results order by task").to_pylist()
    assert sorted(r["task"] for r in results) == sorted(TASKS)
    for row in results:
        assert np.isfinite(row["test_loss"]) and np.isfinite(row["baseline_loss"])
        state = torch.load(workspace.path(row["checkpoint_path"]), weights_only=True)
        assert state["task"] == row["task"]
    n_epochs = workspace.db.scalar("select count(*) from training_epochs")
    assert n_epochs == len(TASKS) * TRAIN["epochs"]
    assert workspace.db.scalar("select count(*) from tasks") == len(list_tasks())


def test_train_skips_done_tasks(own_copy: Workspace):
    (result,) = train_tasks(own_copy, ["normal"], progress=False)
    assert result.skipped


def test_moving_an_image_between_splits_retrains(tmp_path: Path, dataset: Path):
    """A re-ingest with another split file moves images between splits: a network that may have trained on what
    is now a test image is retrained, not skipped."""
    workspace = Workspace.init(tmp_path / "study")
    workspace.update_settings("train", TRAIN)
    ingest_generated(workspace, dataset)
    train_tasks(workspace, ["normal"], progress=False)
    (again,) = train_tasks(workspace, ["normal"], progress=False)
    assert again.skipped
    with workspace.db.transaction() as con:  # what ingest --split-file writes for a building moved to test
        con.execute("update images set split = 'test' where image_id = (select min(image_id) from images)")
    (moved,) = train_tasks(workspace, ["normal"], progress=False)
    assert not moved.skipped and moved.n_test_images == again.n_test_images + 1


@pytest.mark.parametrize("command", ["train", "export", "extract"])
def test_model_commands_print_every_format(command: str, own_copy: Workspace):
    """On finished work (so each command only reports): CSV and JSON parse, one row per task, the same tasks."""
    import csv
    import io

    args = [command, "normal", "depth_zbuffer", "-w", str(own_copy.root), "--format"]
    as_csv = CliRunner().invoke(cli, [*args, "csv"])
    assert as_csv.exit_code == 0, as_csv.output
    as_json = CliRunner().invoke(cli, [*args, "json"])
    assert as_json.exit_code == 0, as_json.output
    key = "task" if command == "train" else "encoder"
    csv_rows = list(csv.DictReader(io.StringIO(as_csv.output)))
    assert sorted(r[key] for r in csv_rows) == sorted(r[key] for r in json.loads(as_json.output))
    assert sorted(r[key] for r in csv_rows) == ["depth_zbuffer", "normal"]
    if command == "export":  # a list cell is one CSV field
        assert {r["representation_shape"] for r in csv_rows} == {"8,4,4"}


def test_train_cli_rejects_unknown_task(workspace: Workspace):
    result = CliRunner().invoke(cli, ["train", "nope", "-w", str(workspace.root)])
    assert result.exit_code == 1
    assert "unknown task 'nope'" in result.output


# ---------------------------------------------------------------- export


@pytest.mark.parametrize("encoder", [*TASKS, "random"])
def test_export_parity_metadata_and_registration(encoder: str, workspace: Workspace):
    record = registered_encoder(workspace, encoder)
    assert record.parity_max_abs_diff is not None and record.parity_max_abs_diff <= 1e-4
    path = workspace.path(record.onnx_path)
    assert path == workspace.path("models", f"{encoder}.onnx")
    model = onnx.load(str(path))
    onnx.checker.check_model(model)
    props = {p.key: p.value for p in model.metadata_props}
    assert json.loads(props["representation_shape"]) == list(record.representation_shape) == [8, SIZE // 8, SIZE // 8]
    assert props["input_size"] == str(SIZE) and "commit" in props and "preprocessing" in props
    if encoder != "random":
        assert props["task"] == encoder
    assert [i.name for i in model.graph.input] == ["image"] and [o.name for o in model.graph.output] == [
        "representation"
    ]
    assert model.graph.input[0].type.tensor_type.shape.dim[0].dim_param  # dynamic batch axis
    # Batch norm (the default) is folded into the convolutions: no normalisation runs at inference.
    assert {node.op_type for node in model.graph.node} <= {"Conv", "Relu", "Add", "Identity"}


def test_batch_norm_statistics_are_precise_and_group_norm_exports_with_parity(
    workspace: Workspace, dataset: Path, tmp_path: Path
):
    """Batch norm (the default, the module's workspace): the checkpoint's statistics are those of its own averaged
    weights, pooled over every pixel of the training split, however the split falls into batches. Group norm
    (`[train] norm = "group"`): trained and exported within the parity bound, as LayerNormalization."""
    from taskonomy_db.training import _precise_batch_norm, load_gold_network

    network, config = load_gold_network(workspace, "normal")
    assert config.norm == "batch"
    train = load_task_data(workspace, "normal", "train", size=SIZE, progress=False)
    stem_conv, stem_norm = network.encoder.trunk[0][0], network.encoder.trunk[0][1]
    with torch.no_grad():  # the stem's input does not depend on any norm: its exact statistics over the split
        stem = stem_conv((train.batch(torch.arange(len(train))).inputs - 0.5) / 0.25).double()
    mean, variance = stem.mean((0, 2, 3)), stem.var((0, 2, 3))
    torch.testing.assert_close(stem_norm.running_mean, mean.float(), atol=1e-5, rtol=1e-4)
    torch.testing.assert_close(stem_norm.running_var, variance.float(), atol=1e-5, rtol=1e-4)
    stem_norm.reset_running_stats()
    _precise_batch_norm(network, train, batch_size=5)  # uneven batches, the last one short
    assert len(train) % 5
    torch.testing.assert_close(stem_norm.running_mean, mean.float(), atol=1e-5, rtol=1e-4)
    torch.testing.assert_close(stem_norm.running_var, variance.float(), atol=1e-5, rtol=1e-4)

    grouped = Workspace.init(tmp_path / "study")
    grouped.update_settings("train", {**TRAIN, "norm": "group"})
    ingest_generated(grouped, dataset)
    train_tasks(grouped, ["normal"], progress=False)
    (record,) = export_encoders(grouped, ["normal"])
    assert record.parity_max_abs_diff is not None and record.parity_max_abs_diff <= 1e-4
    ops = {node.op_type for node in onnx.load(str(grouped.path(record.onnx_path))).graph.node}
    assert "LayerNormalization" in ops and "GroupNormalization" not in ops


def test_configs_stored_before_the_norm_setting_describe_group_norm():
    stored = NetworkConfig(width=8).as_dict()
    del stored["norm"]
    assert NetworkConfig.from_dict(stored).norm == "group"
    assert NetworkConfig.from_dict(NetworkConfig(width=8).as_dict()).norm == "batch"


def test_train_refuses_an_unknown_norm(own_copy: Workspace):
    runs = own_copy.db.scalar("select count(*) from runs")
    result = CliRunner().invoke(cli, ["train", "normal", "--norm", "layer", "-w", str(own_copy.root)])
    assert result.exit_code == 2 and "'layer' is not one of 'batch', 'group'" in result.output
    assert own_copy.db.scalar("select count(*) from runs") == runs  # refused before any run was recorded


@pytest.mark.parametrize(
    ("key", "value", "message"),
    [
        ("epochs", "three", "[train] epochs must be an integer, got 'three'"),
        ("epochs", 0, "[train] epochs must be at least 1, got 0"),
        ("width", 0, "[train] width must be at least 1, got 0"),
        ("batch_size", 1.5, "[train] batch_size must be an integer, got 1.5"),
        ("learning_rate", 0, "[train] learning_rate must be above 0, got 0"),
        ("image_size", 30, "[train] image_size must be a multiple of 8, got 30"),
    ],
)
def test_bad_train_settings_in_tdb_toml_are_one_line_and_keep_the_results(own_copy: Workspace, key, value, message):
    """A bad value in tdb.toml is refused before the retrain it would trigger deletes the stored results."""
    stored = "select task, settings_hash, test_loss from gold_results order by task"
    before, runs = own_copy.db.query(stored), own_copy.db.scalar("select count(*) from runs")
    hand_edit(own_copy, "train", key, value)
    result = CliRunner().invoke(cli, ["train", "normal", "-w", str(own_copy.root)])
    assert result.exit_code == 1 and result.output.endswith(f"{message}\n") and result.output.count("\n") == 1
    assert own_copy.db.query(stored).equals(before) and own_copy.db.scalar("select count(*) from runs") == runs


def torch_features(workspace: Workspace, encoder: str) -> Callable[[torch.Tensor], torch.Tensor]:
    """The PyTorch function an exported encoder must compute: the gold network's `forward_features` loaded from
    its checkpoint, or for `random` the untrained encoder rebuilt from what defines it, the study's seed and the
    gold architecture (seeded, built, eval mode: batch norm at its initial statistics)."""
    if encoder != "random":
        return load_gold_network(workspace, encoder)[0].forward_features
    _, config = load_gold_network(workspace, TASKS[0])
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(workspace.seed)
        return build_encoder(config).eval()


@pytest.mark.parametrize("encoder", [*TASKS, "random"])
def test_onnx_file_matches_forward_features_at_several_batch_sizes(encoder: str, workspace: Workspace):
    """The export measures parity itself, on the module it exported and at one batch size, and records the figure
    that test_export_parity_metadata_and_registration reads back. This opens the written file as any consumer
    would and compares it with the network rebuilt from its checkpoint at batch sizes the export never ran (it
    uses 2 and 4), so a graph that drifted from the network (a wrong preprocessing fold, a batch-dependent
    shape) fails here even if the export's own check were wrong."""
    options = ort.SessionOptions()
    options.intra_op_num_threads = 1  # two shared cores
    session = ort.InferenceSession(
        str(workspace.path("models", f"{encoder}.onnx")), options, providers=["CPUExecutionProvider"]
    )
    (image,), (representation,) = session.get_inputs(), session.get_outputs()
    assert image.shape[1:] == [3, SIZE, SIZE] and not isinstance(image.shape[0], int)  # NCHW, dynamic batch
    forward = torch_features(workspace, encoder)
    rng = np.random.default_rng(19)
    for batch in (1, 3, 8):
        images = rng.random((batch, 3, SIZE, SIZE), dtype=np.float32)  # RGB in [0, 1], as the graph expects
        (actual,) = session.run([representation.name], {image.name: images})
        with torch.no_grad():
            expected = forward(torch.from_numpy(images)).numpy()
        assert actual.shape == expected.shape == (batch, 8, SIZE // 8, SIZE // 8)
        np.testing.assert_allclose(actual, expected, rtol=0, atol=1e-4, err_msg=f"batch of {batch}")


# ---------------------------------------------------------------- extract


@pytest.mark.parametrize("encoder", [*TASKS, "random"])
def test_parquet_schema_and_one_row_per_image(encoder: str, workspace: Workspace):
    parts = sorted(representation_dir(workspace, encoder).glob("part-*.parquet"))
    assert len(parts) >= 2  # 24 images in parts of 10
    table = pa.concat_tables(pq.read_table(p) for p in parts)
    assert table.schema.field("image_id").type == pa.int32()
    assert table.schema.field("representation").type == pa.list_(pa.float16(), 8 * (SIZE // 8) ** 2)
    ids = table.column("image_id").to_pylist()
    assert sorted(ids) == image_ids(workspace)  # exactly one row per image
    meta = pq.read_schema(parts[0]).metadata
    assert meta[b"encoder"].decode() == encoder
    assert meta[b"sha256"].decode() == registered_encoder(workspace, encoder).sha256
    assert json.loads(meta[b"shape"]) == [8, SIZE // 8, SIZE // 8]


def test_extracted_representation_matches_the_network(workspace: Workspace):
    ids, reps = read_representations(workspace, "normal")
    from taskonomy_db.training import load_gold_network

    network, _ = load_gold_network(workspace, "normal")
    data = load_task_data(workspace, "normal", size=SIZE, progress=False)
    with torch.no_grad():
        expected = network.forward_features(data.rgb[:4].float() / 255).numpy()
    assert list(ids) == list(data.image_ids)
    np.testing.assert_allclose(reps[:4], expected, atol=2e-2, rtol=1e-2)  # float16 storage


@pytest.fixture(scope="module")
def png_rgb(workspace: Workspace) -> dict[int, np.ndarray]:
    """Each image decoded straight from its PNG by Pillow, not the project's loader: float32 RGB in [0, 1],
    (3, H, W); generated at the training size, so extraction's resize is the identity here."""
    from PIL import Image

    images = {}
    for row in workspace.db.query("select image_id, rgb_path from images order by 1").to_pylist():
        with Image.open(row["rgb_path"]) as png:
            assert png.mode == "RGB" and png.size == (SIZE, SIZE)
            images[row["image_id"]] = np.asarray(png, np.float32).transpose(2, 0, 1) / 255
    return images


@pytest.mark.parametrize("encoder", [*TASKS, "random"])
def test_parquet_representations_are_forward_features_of_the_png_images(
    encoder: str, workspace: Workspace, png_rgb: dict[int, np.ndarray]
):
    parts = sorted(representation_dir(workspace, encoder).glob("part-*.parquet"))
    table = pa.concat_tables(pq.read_table(p) for p in parts).sort_by("image_id")
    ids = table.column("image_id").to_pylist()
    assert ids == sorted(png_rgb)
    stored = table.column("representation").combine_chunks().flatten().to_numpy()
    assert stored.dtype == np.float16
    with torch.no_grad():
        expected = torch_features(workspace, encoder)(torch.from_numpy(np.stack([png_rgb[i] for i in ids])))
    expected = expected.numpy()
    # float16 rounding moves a value by at most 2**-11 of it (rtol doubles that); atol is the export's parity
    # bound between onnxruntime and PyTorch. A wrong image, channel order, scaling or row order lands far outside.
    np.testing.assert_allclose(stored.astype(np.float32).reshape(expected.shape), expected, rtol=2**-10, atol=1e-4)


def test_extract_refuses_a_changed_onnx_file(own_copy: Workspace, tmp_path: Path):
    record = registered_encoder(own_copy, "edge_texture")
    path = own_copy.path(record.onnx_path)
    model = onnx.load_from_string(path.read_bytes())
    onnx.helper.set_model_props(model, {"tampered": "yes"})
    path.write_bytes(model.SerializeToString())
    with pytest.raises(EncoderError, match="sha256"):
        extract(own_copy, ["edge_texture"], progress=False)
    result = CliRunner().invoke(cli, ["extract", "edge_texture", "-w", str(own_copy.root)])
    assert result.exit_code == 1 and "sha256" in result.output and "Traceback" not in result.output


def test_reading_representations_of_another_export_fails(own_copy: Workspace):
    parts = sorted(representation_dir(own_copy, "keypoints2d").glob("part-*.parquet"))
    table = pq.read_table(parts[0])
    meta = dict(table.schema.metadata)
    meta[b"sha256"] = b"0" * 64
    pq.write_table(table.replace_schema_metadata(meta), parts[0])
    with pytest.raises(EncoderError, match="re-run `tdb extract keypoints2d`"):
        read_representations(own_copy, "keypoints2d")
    report = extract(own_copy, ["keypoints2d"], progress=False)[0]  # the stale part is replaced
    assert report.n_removed_stale == 1 and report.n_extracted > 0
    ids, _ = read_representations(own_copy, "keypoints2d")
    assert list(ids) == image_ids(own_copy)


def test_extract_compacts_duplicate_rows(own_copy: Workspace):
    folder = representation_dir(own_copy, "reshading")
    parts = sorted(folder.glob("part-*.parquet"))
    (folder / "part-00099.parquet").write_bytes(parts[0].read_bytes())  # as if two runs raced
    extract(own_copy, ["reshading"], progress=False)
    ids, _ = read_representations(own_copy, "reshading")
    assert list(ids) == image_ids(own_copy)


def test_extract_killed_with_sigkill_then_rerun_has_one_row_per_image(own_copy: Workspace):
    folder = representation_dir(own_copy, "depth_zbuffer")
    for part in folder.glob("part-*.parquet"):
        part.unlink()
    # A real subprocess running the real extraction; each part's write is followed by a pause so the kill
    # reliably lands mid-run, between parts or inside one.
    script = f"""
import time, taskonomy_db.extract as ex
from taskonomy_db.workspace import Workspace
write = ex._write_part
def slow_write(*args):
    write(*args)
    time.sleep(0.4)
ex._write_part = slow_write
ex.extract(Workspace.open({str(own_copy.root)!r}), ["depth_zbuffer"], part_rows=3, batch_size=2, progress=False)
"""
    process = subprocess.Popen([sys.executable, "-c", script], env={**os.environ, "OMP_NUM_THREADS": "1"})
    deadline = time.monotonic() + 60
    while len(list(folder.glob("part-*.parquet"))) < 2 and time.monotonic() < deadline:
        time.sleep(0.05)
    process.send_signal(signal.SIGKILL)
    process.wait()
    assert process.returncode == -signal.SIGKILL
    n_parts = len(list(folder.glob("part-*.parquet")))
    assert 2 <= n_parts < 8  # killed mid-run
    (folder / ".part-00050.999.tmp").write_bytes(b"torn")  # a half-written part as a kill can leave one

    report = extract(own_copy, ["depth_zbuffer"], progress=False)[0]
    assert report.n_extracted == len(image_ids(own_copy)) - 3 * n_parts
    ids, _ = read_representations(own_copy, "depth_zbuffer")
    assert list(ids) == image_ids(own_copy)
    assert not list(folder.glob(".part-*.tmp"))


# ---------------------------------------------------------------- user encoders


class TinyEncoder(torch.nn.Module):
    def __init__(self, channels: int = 3, stride: int = 4, flat: bool = False) -> None:
        super().__init__()
        self.conv = torch.nn.Conv2d(channels, 4, stride, stride=stride)
        self.flat = flat

    def forward(self, image: torch.Tensor) -> torch.Tensor:
        features = self.conv(image)
        return features.flatten(1) if self.flat else features


class ChannelsLast(TinyEncoder):
    def forward(self, image: torch.Tensor) -> torch.Tensor:
        return super().forward(image.permute(0, 3, 1, 2))


def export_tiny(
    path: Path,
    channels: int = 3,
    size: int = SIZE,
    dynamic_size: bool = False,
    fixed_batch: bool = False,
    **encoder: Any,
) -> Path:
    axes = {0: "batch", 2: "h", 3: "w"} if dynamic_size else {0: "batch"}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)  # the TorchScript exporter; dynamo needs onnxscript
        torch.onnx.export(
            TinyEncoder(channels, **encoder).eval(),
            (torch.rand(1, channels, size, size),),
            str(path),
            input_names=["pixels"],
            output_names=["features"],
            dynamic_axes=None if fixed_batch else {"pixels": axes, "features": {0: "batch"}},
            dynamo=False,
        )
    return path


@pytest.mark.parametrize(
    ("encoder", "message"),
    [
        ({"fixed_batch": True}, "batch axis is fixed at 1; export it with a dynamic batch axis"),
        ({"flat": True}, "gives a 256 output; transfers need a feature map"),
        ({"stride": 3}, "gives a 10x10 map, whose side does not divide the 32-pixel labels"),
    ],
)
def test_add_encoder_refuses_what_extract_or_transfer_could_not_use(own_copy, tmp_path, encoder, message):
    path = export_tiny(tmp_path / "mine.onnx", **encoder)
    result = CliRunner().invoke(cli, ["add-encoder", "mine", str(path), "-w", str(own_copy.root)])
    assert result.exit_code == 1 and message in result.output and result.output.count("\n") == 1, result.output
    assert not own_copy.path("models", "mine.onnx").exists()
    assert own_copy.db.scalar("select count(*) from encoders where encoder = 'mine'") == 0


def test_add_encoder_registers_and_extracts_a_user_model(own_copy: Workspace, tmp_path: Path):
    path = export_tiny(tmp_path / "tiny.onnx")
    result = CliRunner().invoke(
        cli, ["add-encoder", "tiny", str(path), "--mean", "0.5,0.5,0.5", "-w", str(own_copy.root)]
    )
    assert result.exit_code == 0, result.output
    record = registered_encoder(own_copy, "tiny")
    assert record.kind == "user" and record.representation_shape == (4, SIZE // 4, SIZE // 4)
    assert record.input_size == SIZE and json.loads(record.preprocessing)["mean"] == [0.5, 0.5, 0.5]
    extract(own_copy, ["tiny"], progress=False)
    ids, reps = read_representations(own_copy, "tiny")
    assert list(ids) == image_ids(own_copy) and reps.shape[1:] == (4, SIZE // 4, SIZE // 4)
    with pytest.raises(EncoderError, match="already registered"):
        add_encoder(own_copy, "tiny", path)
    again = CliRunner().invoke(cli, ["add-encoder", "tiny", str(path), "--replace", "-w", str(own_copy.root)])
    assert again.exit_code == 0 and again.output.startswith("replaced encoder tiny ")


def test_add_encoder_refuses_inputs_that_do_not_match_the_images(own_copy: Workspace, tmp_path: Path):
    grey = export_tiny(tmp_path / "grey.onnx", channels=1)
    with pytest.raises(EncoderError, match="1 channels, but the dataset's images are RGB"):
        add_encoder(own_copy, "grey", grey)
    sized = export_tiny(tmp_path / "sized.onnx", size=64)
    with pytest.raises(EncoderError, match="height is 64, but the registered input size is 32"):
        add_encoder(own_copy, "sized", sized, input_size=SIZE)
    channels_last = tmp_path / "nhwc.onnx"
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        torch.onnx.export(
            ChannelsLast().eval(), (torch.rand(1, SIZE, SIZE, 3),), str(channels_last), dynamo=False,
            input_names=["pixels"], dynamic_axes={"pixels": {0: "batch"}},
        )  # fmt: skip
    with pytest.raises(EncoderError, match=r"the input is channels-last \(None, 32, 32, 3\)"):
        add_encoder(own_copy, "nhwc", channels_last)
    dynamic = export_tiny(tmp_path / "dynamic.onnx", dynamic_size=True)
    with pytest.raises(EncoderError, match="pass --input-size"):
        add_encoder(own_copy, "dynamic", dynamic)
    with pytest.raises(EncoderError, match="name of a task"):
        add_encoder(own_copy, "normal", dynamic, input_size=SIZE)
    for baseline in ("gold", "scratch"):  # would pass for the Quality / Gain reference of every target
        with pytest.raises(EncoderError, match="names a baseline"):
            add_encoder(own_copy, baseline, dynamic, input_size=SIZE)
    for std in ((0.0, 1.0, 1.0), (-1.0, 1.0, 1.0), (float("nan"), 1.0, 1.0)):  # 0 made every value NaN
        with pytest.raises(EncoderError, match="std must be"):
            add_encoder(own_copy, "scaled", dynamic, input_size=SIZE, std=std)
    assert not list(own_copy.path("models").glob("scaled*")) and not list(own_copy.path("models").glob("gold*"))
    (tmp_path / "junk.onnx").write_bytes(b"not a model")
    result = CliRunner().invoke(cli, ["add-encoder", "junk", str(tmp_path / "junk.onnx"), "-w", str(own_copy.root)])
    assert result.exit_code == 1 and "not a valid ONNX model" in result.output


def test_unknown_encoder_is_a_clear_error(workspace: Workspace):
    result = CliRunner().invoke(cli, ["extract", "nope", "-w", str(workspace.root)])
    assert result.exit_code == 1 and "no registered encoder 'nope'" in result.output


def test_pixel_shuffle_matches_torch_forward_and_backward():
    from taskonomy_db.models.networks import PixelShuffle

    x = torch.randn(3, 2 * 64, 5, 7, requires_grad=True)
    ours, theirs = PixelShuffle(8)(x), torch.nn.functional.pixel_shuffle(x, 8)
    assert torch.equal(ours, theirs)
    grad = torch.randn_like(ours)
    (ours_grad,) = torch.autograd.grad(ours, x, grad)
    (theirs_grad,) = torch.autograd.grad(theirs, x, grad)
    assert torch.equal(ours_grad, theirs_grad)
