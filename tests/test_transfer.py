"""Transfers end to end on a tiny generated dataset (real DuckDB, Parquet and onnxruntime-extracted representations):
the store contract (one loss per transfer and test image, same test images for every transfer of a target,
baselines by convention, atomic and resumable), the beam of higher orders, divergence, bad input, and a run
killed with SIGKILL and resumed giving the losses of an uninterrupted run."""

from __future__ import annotations

import itertools
import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import torch
from click.testing import CliRunner

from taskonomy_db.cli import cli
from taskonomy_db.encoders import add_encoder, export_encoders
from taskonomy_db.executor import ProcessExecutor
from taskonomy_db.extract import extract
from taskonomy_db.generate import generate
from taskonomy_db.ingest import ingest_generated
from taskonomy_db.models.readout import ReadoutBank
from taskonomy_db.readout import Labels, Patience, Samples, TransferError, at_samples
from taskonomy_db.tasks import get_task
from taskonomy_db.training import load_gold_network, network_sha256, train_tasks
from taskonomy_db.transfer import beam_source_sets, run_transfers
from taskonomy_db.transfer_store import first_order_ranking
from taskonomy_db.workspace import Workspace
from tests.conftest import hand_edit
from tests.test_affinity import numpy_ahp
from tests.test_models import export_tiny

SIZE = 32
TRAIN = {"image_size": SIZE, "epochs": 1, "width": 8, "batch_size": 8, "threads": 1}
TRAINED = ["depth_zbuffer", "depth_euclidean", "normal", "class_scene", "segment_semantic", "reshading"]
EXTRACTED = ["depth_zbuffer", "depth_euclidean", "normal", "class_scene", "segment_semantic", "random"]
TARGETS = ["depth_zbuffer", "depth_euclidean", "class_scene", "segment_semantic"]
FAST = {"transfer_images": 6, "holdout_images": 4, "max_steps": 6, "eval_every": 2, "patience": 2, "batch_size": 4,
        "workers": 1}  # fmt: skip


pytestmark = pytest.mark.usefixtures("one_torch_thread")


@pytest.fixture(scope="module")
def prepared(tmp_path_factory) -> Path:
    """Trained for one epoch, exported and extracted; `reshading` is trained but deliberately not extracted.
    Two buildings (12 images) per split: readouts fit on one val building and stop early on the other."""
    data = tmp_path_factory.mktemp("generated") / "data"
    generate(data, n_buildings=6, rooms_per_building=1, points_per_room=2, views_per_point=3, size=SIZE,
             workers=1, progress=False)  # fmt: skip
    workspace = Workspace.init(tmp_path_factory.mktemp("ws") / "study")
    workspace.update_settings("train", TRAIN)
    workspace.update_settings("split", {"train": 1, "val": 1, "test": 1})
    workspace.update_settings("transfer", {"holdout_images": 4})
    ingest_generated(workspace, data)
    train_tasks(workspace, TRAINED, progress=False)
    export_encoders(workspace, EXTRACTED)
    extract(workspace, EXTRACTED, progress=False)
    return workspace.root


@pytest.fixture
def workspace(prepared: Path, tmp_path: Path) -> Workspace:
    """A private copy, so each test starts with an empty transfer store."""
    root = tmp_path / "study"
    shutil.copytree(prepared, root)
    return Workspace.open(root)


def stored(workspace: Workspace, sql: str, params: list | None = None) -> list[dict]:
    return workspace.db.query(sql, params).to_pylist()


def losses_by_key(workspace: Workspace) -> dict[str, list[tuple[int, float]]]:
    rows = stored(
        workspace,
        "select transfer_key, image_id, loss from transfers join losses using (transfer_id) order by all",
    )
    out: dict[str, list[tuple[int, float]]] = {}
    for row in rows:
        out.setdefault(row["transfer_key"], []).append((row["image_id"], row["loss"]))
    return out


# ---------------------------------------------------------------- the beam


def test_beam_follows_the_paper():
    ranking = ["a", "b", "c", "d", "e", "f", "g"]
    assert len(beam_source_sets(ranking, 2, 5)) == 10
    assert len(beam_source_sets(ranking, 3, 5)) == 10
    assert len(beam_source_sets(ranking, 4, 5)) == 15  # 4-subsets of the top 6
    assert beam_source_sets(ranking, 5, 5) == [("a", "b", "c", "d", "e")]  # the greedy prefix
    assert set(itertools.chain(*beam_source_sets(ranking, 2, 3))) == {"a", "b", "c"}
    assert beam_source_sets(["b", "a"], 2, 5) == [("a", "b")]  # sorted inside a set
    assert beam_source_sets(["a"], 2, 5) == []


@pytest.mark.parametrize("task", ["segment_unsup2d", "segment_unsup25d"])
def test_an_embedding_readout_learns_from_a_representation_that_holds_the_segments(task: str):
    # A readout started at a constant embedding sits where the metric loss has no gradient: every source then
    # gave exactly the baseline's loss. Here the representation is the segmentation itself, so the readout must
    # get well below the constant embedding within a few steps.
    torch.manual_seed(0)
    spec = get_task(task)
    side, size = 8, 32
    segments = torch.randint(0, 4, (16, side, side))
    representation = torch.nn.functional.one_hot(segments, 4).permute(0, 3, 1, 2).float()
    labels = segments.repeat_interleave(size // side, 1).repeat_interleave(size // side, 2)
    # The loss reads sampled pixels as in training (all 1024 would cost 1024^2 pairs an image, 40 s a run).
    mask = torch.zeros(16, size * size, dtype=torch.bool)
    for image in range(16):
        mask[image, torch.randperm(size * size)[:256]] = True
    mask = mask.view(16, size, size)
    prior = spec.baseline_prediction(labels, None)
    bank = ReadoutBank(4, side, [spec], [0], 16, size, [prior])
    constant = spec.loss(prior.expand(16, -1, -1, -1), labels, mask).mean().item()
    optimizer = torch.optim.Adam(bank.parameters(), lr=1e-2)
    for _ in range(30):
        loss = spec.loss(bank(representation)[0], labels, mask).mean()
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    assert loss.item() < 0.5 * constant


def _random_bank(specs, priors, side=8, channels=8, size=64):
    torch.manual_seed(0)
    bank = ReadoutBank(channels, side, specs, list(range(len(specs))), 16, size, priors)
    for module in bank.modules():  # the last layers start at zero: make every output depend on the weights
        if isinstance(module, torch.nn.Conv2d | torch.nn.Linear):
            torch.nn.init.normal_(module.weight, std=0.3)
            torch.nn.init.normal_(module.bias, std=0.3)
    return bank


def test_a_head_at_its_sampled_pixels_equals_its_full_map_there_in_values_loss_and_gradients():
    spec = get_task("segment_unsup2d")
    prior = torch.randn(1, spec.out_channels, 64, 64) * 0.1
    bank = _random_bank([spec, get_task("normal")], [prior, torch.zeros(1, 3, 64, 64)])
    representation = torch.randn(5, 8, 8, 8)
    masks = torch.zeros(5, 64 * 64, dtype=torch.bool)
    for image in range(5):  # different counts per image: the samples are padded
        masks[image, torch.randperm(64 * 64)[: 300 - 20 * image]] = True
    masks[3] = False  # an image with no sampled pixel
    masks = masks.view(5, 64, 64)
    labels = Labels(np.arange(5), np.arange(5, dtype=np.int32), torch.randint(0, 7, (5, 64, 64)), masks)
    samples = Samples.of(labels)
    full = bank(representation)[0]
    sparse = bank(representation, [0], {0: samples.index})[0]
    for image in range(5):
        chosen = masks[image].flatten().nonzero().squeeze(1)
        expected = full[image].flatten(1)[:, chosen]
        got = sparse[image, :, : len(chosen), 0]
        assert torch.allclose(got, expected, atol=1e-5), image
    sparse, targets, valid = at_samples(samples, torch.arange(5), torch.arange(5), sparse)
    full_loss = spec.loss(full, labels.targets, masks)
    sparse_loss = spec.loss(sparse, targets, valid)
    assert torch.allclose(sparse_loss, full_loss, atol=1e-6)
    head = list(bank.heads[0].parameters())
    for got, expected in zip(
        torch.autograd.grad(sparse_loss.sum(), head), torch.autograd.grad(full_loss.sum(), head), strict=True
    ):
        assert torch.allclose(got, expected, atol=1e-6)


def test_a_bank_computes_the_heads_asked_for_as_it_computes_them_all():
    specs = [get_task(t) for t in ("normal", "class_scene", "depth_zbuffer")]
    priors = [torch.zeros(1, 3, 64, 64), torch.zeros(1, specs[1].out_channels), torch.zeros(1, 1, 64, 64)]
    bank = _random_bank(specs, priors)
    representation = torch.randn(4, 8, 8, 8)
    every = bank(representation)
    some = bank(representation, [2, 0])
    assert torch.allclose(some[0], every[2], atol=1e-5)
    assert torch.allclose(some[1], every[0], atol=1e-5)


# ---------------------------------------------------------------- the store contract


def test_orders_one_and_two_with_baselines_fill_the_store_by_contract(workspace):
    sources = ["class_scene", "depth_euclidean", "depth_zbuffer", "normal", "segment_semantic"]
    summary = run_transfers(workspace, dict(FAST, max_order=2, beam=3), TARGETS, progress=False)
    assert not summary.failures
    transfers = stored(workspace, 'select * from transfers order by "order", kind, target, sources')
    assert {t["status"] for t in transfers} == {"done"}

    # First order: every source x target (the target's own encoder included) and the three baselines.
    first = [t for t in transfers if t["order"] == 1]
    assert {(t["target"], tuple(t["sources"])) for t in first if t["kind"] == "transfer"} == {
        (target, (source,)) for target in TARGETS for source in sources
    }
    for kind in ("gold", "scratch", "random"):
        assert sorted(t["target"] for t in first if t["kind"] == kind) == sorted(TARGETS)
        assert all(t["sources"] == [kind] for t in first if t["kind"] == kind)

    # Order 2: all pairs of the top 3 of each target's ranking by first-order AHP affinity (numpy's eigenvector
    # over the first order, gold and random: the run's later orders must not move it), the target left out.
    first_keys = [t["transfer_key"] for t in first]
    ranking = first_order_ranking(workspace, first_keys)
    losses = losses_by_key(workspace)
    for target in TARGETS:
        candidates = sorted((t["sources"][0], t["transfer_key"]) for t in first if t["target"] == target)
        candidates = [(name, key) for name, key in candidates if name != "scratch"]
        _, vector = numpy_ahp(np.stack([[loss for _, loss in losses[key]] for _, key in candidates]))
        expected = sorted(
            ((name, value) for (name, _), value in zip(candidates, vector, strict=True)),
            key=lambda item: (-item[1], item[0]),
        )
        expected_names = [name for name, _ in expected if name not in (target, "gold", "random")]
        assert ranking[target] == expected_names
        assert target not in ranking[target] and len(ranking[target]) == len(sources) - 1
        pairs = {tuple(t["sources"]) for t in transfers if t["order"] == 2 and t["target"] == target}
        assert pairs == {tuple(sorted(p)) for p in itertools.combinations(ranking[target][:3], 2)}

    # Exactly one finite loss per (transfer, test image), and the same test images for every transfer of a target.
    test_ids = {r["image_id"] for r in stored(workspace, "select image_id from images where split = 'test'")}
    counts = stored(
        workspace,
        "select transfer_id, count(*) as n, count(distinct image_id) as n_distinct,"
        " bool_and(isfinite(loss)) as finite from losses group by transfer_id",
    )
    assert len(counts) == len(transfers)
    assert all(c["n"] == c["n_distinct"] == len(test_ids) and c["finite"] for c in counts)
    image_sets = stored(
        workspace,
        "select target, count(distinct list_sort(images)::varchar) as n_sets from ("
        " select target, list(image_id) as images from transfers join losses using (transfer_id)"
        " group by transfer_id, target) group by target",
    )
    assert all(r["n_sets"] == 1 for r in image_sets)

    # Keys and provenance.
    row = transfers[0]  # a gold baseline: its key ends with its network's weights' sha256
    network, _ = load_gold_network(workspace, row["target"])
    assert row["transfer_key"] == (
        f"{row['kind']}:{row['target']}:{'+'.join(row['sources'])}:6:{summary.settings_hash}"
        f":{network_sha256(network)[:12]}"
    )
    assert row["settings_hash"] == summary.settings_hash and row["n_train_images"] == 6
    assert stored(workspace, "select status from runs where command = 'transfer'") == [{"status": "done"}]

    # A rerun finds everything finished and writes nothing.
    again = run_transfers(workspace, dict(FAST, max_order=2, beam=3), TARGETS, progress=False)
    assert all(entry["done"] == 0 and entry["failed"] == 0 for entry in again.counts.values())
    assert sum(entry["skipped"] for entry in again.counts.values()) == len(transfers)
    assert workspace.db.scalar("select count(*) from transfers") == len(transfers)

    # The SQL AHP on these real losses equals numpy's principal eigenvector of the same W' (scratch is no
    # candidate).
    affinity = {(r["target"], tuple(r["sources"])): r["affinity"] for r in stored(workspace, "select * from affinity")}
    by_target: dict[str, dict[tuple[str, ...], np.ndarray]] = {}
    for key, rows in losses_by_key(workspace).items():
        kind, target, sources = key.split(":")[:3]
        if kind != "scratch":
            by_target.setdefault(target, {})[tuple(sources.split("+"))] = np.array([loss for _, loss in rows])
    for target, candidates in by_target.items():
        names = sorted(candidates)
        _, expected = numpy_ahp(np.stack([candidates[name] for name in names]))
        np.testing.assert_allclose([affinity[(target, name)] for name in names], expected, rtol=0, atol=1e-9)


def test_readouts_and_scratch_train_on_images_no_task_network_trained_on(workspace):
    targets, sources = ["depth_zbuffer", "class_scene"], ["depth_zbuffer", "normal"]
    run_transfers(workspace, dict(FAST, max_order=1), targets, sources, progress=False)
    rows = stored(workspace, "select transfer_id, kind, image_id, split, role from transfer_train_images")
    trained = stored(workspace, "select transfer_id from transfers where kind in ('transfer', 'scratch', 'random')")
    assert {r["transfer_id"] for r in rows} == {t["transfer_id"] for t in trained} and len(trained) == 8
    gold_trained = stored(workspace, "select image_id from images where split = 'train'")
    assert not {r["image_id"] for r in gold_trained} & {r["image_id"] for r in rows}
    assert {r["split"] for r in rows} == {"val"}
    for transfer in trained:
        roles = [r["role"] for r in rows if r["transfer_id"] == transfer["transfer_id"]]
        assert roles.count("fit") == 6 and roles.count("holdout") == 4
    # Early stopping judges buildings the readout never fit on.
    building = {r["image_id"]: r["building"] for r in stored(workspace, "select image_id, building from images")}
    fit = {building[r["image_id"]] for r in rows if r["role"] == "fit"}
    holdout = {building[r["image_id"]] for r in rows if r["role"] == "holdout"}
    assert fit and holdout and not fit & holdout
    assert workspace.db.scalar("select count(*) from transfers where kind = 'gold' and image_set is not null") == 0


def test_readouts_stop_when_the_held_out_loss_stops_improving(workspace):
    settings = dict(FAST, max_order=1, max_steps=300, eval_every=1, patience=2, baselines=["scratch"])
    run_transfers(workspace, settings, ["depth_zbuffer", "class_scene"], ["normal"], progress=False)
    rows = stored(workspace, "select kind, n_steps, best_step from transfers")
    assert len(rows) == 4 and all(0 <= r["best_step"] <= r["n_steps"] <= 300 for r in rows)
    stopped = [r for r in rows if r["n_steps"] < 300]
    assert stopped, rows  # six fit images are memorised long before 300 steps
    assert all(r["n_steps"] - r["best_step"] == 2 for r in stopped)  # two evaluations without improvement


def test_patience_counts_evaluations_without_improvement():
    watch = Patience(2)
    assert watch.update(1.0, 10) and not watch.update(1.0, 20) and not watch.stopped
    assert watch.update(0.5, 30) and not watch.update(0.7, 40) and not watch.update(0.6, 50)
    assert watch.stopped and watch.best == 0.5 and watch.best_step == 30


def test_retired_epochs_setting_says_what_replaced_it(workspace):
    hand_edit(workspace, "transfer", "epochs", 12)
    result = CliRunner().invoke(cli, ["transfer", "-w", str(workspace.root)])
    assert result.exit_code == 1 and "[transfer] epochs is no longer a setting" in result.output
    assert "max_steps" in result.output and result.output.count("\n") == 1


def test_a_retrained_encoder_is_transferred_again_not_skipped(workspace):
    # Before transfer keys carried the encoders' sha256, a rerun after retraining depth_zbuffer skipped its
    # transfers as done, and the affinities kept serving the old encoder's losses.
    settings = dict(FAST, max_order=1, baselines=["gold"])
    sources = ["depth_zbuffer", "normal"]
    run_transfers(workspace, settings, TARGETS, sources, progress=False)
    old_sha = workspace.db.scalar("select sha256 from encoders where encoder = 'depth_zbuffer'")
    train_tasks(workspace, ["depth_zbuffer"], overrides={"epochs": 2}, progress=False)
    export_encoders(workspace, ["depth_zbuffer"])
    extract(workspace, ["depth_zbuffer"], progress=False)
    assert workspace.db.scalar("select sha256 from encoders where encoder = 'depth_zbuffer'") != old_sha

    summary = run_transfers(workspace, settings, TARGETS, sources, progress=False)
    counts = summary.counts[(1, "transfer")]
    assert counts == {"done": len(TARGETS), "failed": 0, "skipped": len(TARGETS)}  # from depth_zbuffer: again
    assert summary.counts[(1, "gold")] == {"done": 1, "failed": 0, "skipped": len(TARGETS) - 1}
    unchanged = run_transfers(workspace, settings, TARGETS, sources, progress=False)
    assert unchanged.counts[(1, "transfer")]["done"] == 0
    # The views serve the new transfers: one candidate per source set, the latest.
    served = stored(
        workspace,
        """select transfers.transfer_key from candidate_transfers join transfers using (transfer_id)
           where transfers.sources = ['depth_zbuffer']""",
    )
    assert len(served) == len(TARGETS) and all(new_sha_prefix(workspace) in r["transfer_key"] for r in served)


def test_seeds_add_readouts_of_their_own_and_keep_the_first(workspace):
    settings = dict(FAST, max_order=1, baselines=["gold", "random"])
    targets, sources = TARGETS[:2], ["class_scene", "normal"]
    run_transfers(workspace, settings, targets, sources, progress=False)
    first = losses_by_key(workspace)
    summary = run_transfers(workspace, dict(settings, seeds=2), targets, sources, progress=False)
    assert summary.counts[(1, "transfer")] == {"done": 4, "failed": 0, "skipped": 4}
    assert summary.counts[(1, "random")] == {"done": 2, "failed": 0, "skipped": 2}
    assert summary.counts[(1, "gold")] == {"done": 0, "failed": 0, "skipped": 2}  # one network, one loss
    now = losses_by_key(workspace)
    assert {key: now[key] for key in first} == first  # seed 0 is the single-seed study's readout, kept
    rows = stored(
        workspace,
        "select target, sources, kind, list(seed order by seed_index) as seeds, list(transfer_key) as keys,"
        " count(distinct settings_hash) as hashes from transfers group by all",
    )
    assert len(rows) == 2 * 4 and all(r["hashes"] == 1 for r in rows)
    for row in (r for r in rows if r["kind"] != "gold"):  # gold: one network, one seed
        assert len(row["seeds"]) == len(set(row["seeds"])) == 2
        second = next(key for key in row["keys"] if key not in first)
        assert now[second] != now[next(key for key in row["keys"] if key in first)]
    n_seeds = stored(workspace, "select kind, n_seeds from affinity_candidates")
    assert all(r["n_seeds"] == (1 if r["kind"] == "gold" else 2) for r in n_seeds) and not summary.seed_shortfalls
    with workspace.db.transaction() as con:  # a source set an earlier run measured with one seed
        con.execute("insert into transfers by name select * replace (transfer_id + 1000 as transfer_id, 'k' ||"
                    " transfer_key as transfer_key, ['normal', 'x'] as sources) from transfers where seed_index = 0"
                    " and sources = ['normal']")  # fmt: skip
    rerun = run_transfers(workspace, dict(settings, seeds=2), targets, sources, progress=False)
    assert rerun.counts[(1, "transfer")]["done"] == 0 and rerun.seed_shortfalls == dict.fromkeys(targets, 1)


def new_sha_prefix(workspace: Workspace) -> str:
    return workspace.db.scalar("select sha256 from encoders where encoder = 'depth_zbuffer'")[:12]


def test_a_diverged_transfer_is_recorded_as_failed_without_losses(workspace):
    result = CliRunner().invoke(
        cli,
        ["transfer", "-w", str(workspace.root), "--targets", "depth_zbuffer", "--sources", "normal",
         "--baselines", "random", "--transfer-images", "6", "--holdout-images", "4", "--max-steps", "4",
         "--max-order", "1"],
        catch_exceptions=False,
    )  # fmt: skip
    assert result.exit_code == 0
    workspace.update_settings("transfer", {"learning_rate": 1e30})
    result = CliRunner().invoke(
        cli, ["transfer", "-w", str(workspace.root), "--targets", "depth_zbuffer", "--sources", "normal",
              "--baselines", "random", "--transfer-images", "6", "--holdout-images", "4", "--max-steps", "4",
              "--max-order", "1"]
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    assert "failed: transfer:depth_zbuffer:normal" in result.output
    failed = stored(workspace, "select transfer_id, failure_reason from transfers where status = 'failed'")
    assert len(failed) == 2 and all(f["failure_reason"].startswith("diverged") for f in failed)
    ids = [f["transfer_id"] for f in failed]
    assert workspace.db.scalar("select count(*) from losses where transfer_id in (select unnest(?))", [ids]) == 0
    # The earlier, healthy transfers are untouched (another settings hash).
    assert workspace.db.scalar("select count(*) from transfers where status = 'done'") == 2


def test_process_workers_give_the_serial_losses(workspace):
    targets = ["depth_zbuffer", "class_scene"]
    settings = dict(FAST, max_order=1, baselines=["random"])
    run_transfers(workspace, settings, targets, ["depth_zbuffer", "normal"], progress=False)
    serial = losses_by_key(workspace)
    with workspace.db.transaction() as con:
        con.execute("delete from losses; delete from transfers")
    run_transfers(workspace, settings, targets, ["depth_zbuffer", "normal"], False, ProcessExecutor(2))
    assert losses_by_key(workspace) == serial and len(serial) == 6


# ---------------------------------------------------------------- bad input


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--targets", "reshading"], "target reshading has no extracted representations"),
        (["--targets", "jigsaw"], "source-only task"),
        (["--targets", "no_such_task"], "unknown task 'no_such_task'"),
        (["--sources", "reshading"], "unknown source encoder 'reshading'"),
        (["--sources", "random"], "random is a baseline"),
        (["--transfer-images", "100000"], "--transfer-images 100000 is more than the 6 images the val split's"),
        (["--holdout-images", "100000"], "--holdout-images 100000 is more than the 6 images"),
        (["--sources", "normal,depth_zbuffer", "--max-order", "3"], "--max-order 3 is above the"),
        (["--max-order", "2", "--beam", "9"], "--beam 9 is above the"),
        (["--baselines", "gold,magic"], "unknown baseline 'magic'"),
    ],
)
def test_bad_input_is_one_clear_line_and_writes_nothing(workspace, args, message):
    runs_before = workspace.db.scalar("select count(*) from runs")
    result = CliRunner().invoke(cli, ["transfer", "-w", str(workspace.root), *args])
    assert result.exit_code == 1
    assert message in result.output and result.output.count("\n") == 1, result.output
    assert workspace.db.scalar("select count(*) from transfers") == 0
    assert workspace.db.scalar("select count(*) from runs") == runs_before


@pytest.mark.parametrize(
    ("key", "value", "message"),
    [
        ("transfer_images", "many", "[transfer] transfer_images must be an integer, got 'many'"),
        ("beam", 0, "[transfer] beam must be at least 1, got 0"),
        ("seeds", 0, "[transfer] seeds must be at least 1, got 0"),
        ("weight_decay", -1.0, "[transfer] weight_decay must be at least 0, got -1.0"),
        ("baselines", "gold", "[transfer] baselines must be a list of names, got 'gold'"),
    ],
)
def test_bad_transfer_settings_in_tdb_toml_are_one_line_and_write_nothing(workspace, key, value, message):
    runs_before = workspace.db.scalar("select count(*) from runs")
    hand_edit(workspace, "transfer", key, value)
    result = CliRunner().invoke(cli, ["transfer", "-w", str(workspace.root)])
    assert result.exit_code == 1 and result.output == f"Error: {workspace.root / 'tdb.toml'}: {message}\n"
    assert workspace.db.scalar("select count(*) from transfers") == 0
    assert workspace.db.scalar("select count(*) from runs") == runs_before


def test_higher_orders_refuse_sources_whose_maps_differ_in_size(workspace, tmp_path):
    add_encoder(workspace, "mine", export_tiny(tmp_path / "mine.onnx"))  # an 8x8 map; the task encoders' are 4x4
    extract(workspace, ["mine"], progress=False)
    args = ["transfer", "-w", str(workspace.root), "--targets", "depth_zbuffer", "--sources", "mine,normal"]
    args += ["--transfer-images", "6", "--holdout-images", "4", "--max-steps", "2", "--baselines", "none"]
    args += ["--workers", "1"]
    refused = CliRunner().invoke(cli, [*args, "--max-order", "2"])
    assert refused.exit_code == 1 and "these differ (mine 8x8, normal 4x4)" in refused.output, refused.output
    assert workspace.db.scalar("select count(*) from transfers") == 0
    assert CliRunner().invoke(cli, [*args, "--max-order", "1"]).exit_code == 0  # each alone is fine
    assert stored(workspace, "select sources from transfers order by sources") == [
        {"sources": ["mine"]},
        {"sources": ["normal"]},
    ]


def test_bad_input_from_the_library_raises_transfer_error(workspace):
    with pytest.raises(TransferError, match="is more than the 6 images"):
        run_transfers(workspace, {"transfer_images": 10_000}, progress=False)


# ---------------------------------------------------------------- kill and resume


def _stderr(root: Path) -> Path:
    return root.parent / f"{root.name}.stderr"


def _tdb(root: Path) -> subprocess.Popen:
    """`tdb transfer` in the background, its errors to a file beside the workspace: a pipe nobody reads fills
    (64 KiB) and stalls the run."""
    command = [sys.executable, "-c", "from taskonomy_db.cli import main; main()", "transfer", "-w", str(root),
               "--transfer-images", "6", "--holdout-images", "4", "--max-steps", "40", "--max-order", "2",
               "--beam", "3",
               "--targets", ",".join(TARGETS), "--workers", "1"]  # fmt: skip
    with _stderr(root).open("a") as err:
        return subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=err)


def _finishes(process: subprocess.Popen, root: Path) -> None:
    assert process.wait(timeout=300) == 0, _stderr(root).read_text()[-3000:]


def test_sigkill_mid_run_then_rerun_equals_an_uninterrupted_run(workspace, tmp_path):
    reference_root = tmp_path / "reference"
    shutil.copytree(workspace.root, reference_root)
    reference = Workspace.open(reference_root)
    _finishes(_tdb(reference_root), reference_root)
    expected = losses_by_key(reference)

    process = _tdb(workspace.root)
    deadline = time.monotonic() + 240
    n_seen = 0
    while time.monotonic() < deadline and process.poll() is None:
        # The store answers read-only queries while the run writes to it (`tdb query` in another terminal).
        result = CliRunner().invoke(cli, ["query", "-w", str(workspace.root), "select count(*) from transfers"])
        assert result.exit_code == 0, result.output
        n_seen = int(result.output.split()[-1])
        if n_seen >= 3:
            break
        time.sleep(0.05)
    assert process.poll() is None, "the run finished before it could be killed"
    os.kill(process.pid, signal.SIGKILL)
    process.wait()

    # Only whole transfers survive the kill.
    partial = losses_by_key(workspace)
    assert 0 < len(partial) < len(expected)
    n_test = workspace.db.scalar("select count(*) from images where split = 'test'")
    assert all(len(rows) == n_test for rows in partial.values())
    assert workspace.db.scalar("select count(*) from transfers where status = 'done'") == len(partial)

    killed = "select status from runs where command = 'transfer' and pid = ?"
    assert stored(workspace, killed, [process.pid]) == [{"status": "running"}]  # nothing could record the kill

    _finishes(_tdb(workspace.root), workspace.root)
    # The next command saw that the killed run's process is gone.
    assert stored(workspace, killed, [process.pid]) == [{"status": "interrupted"}]
    resumed = losses_by_key(workspace)
    assert resumed.keys() == expected.keys()
    for key, rows in expected.items():
        assert resumed[key] == rows, key
    assert np.isfinite([loss for rows in resumed.values() for _, loss in rows]).all()


def test_estimates_score_every_pair_on_transfer_training_images_and_meet_the_measured_ranking(workspace):
    from taskonomy_db.estimate import _images, estimate

    run_transfers(workspace, dict(FAST, max_order=1, baselines=[]), TARGETS[:2], progress=False)
    summary = estimate(workspace, ["logme", "cka"], TARGETS[:2], n_images=64, progress=False)
    sources = sorted(set(EXTRACTED) - {"random"})
    assert len(summary.rows) == 2 * 2 * len(sources) and not summary.skipped
    stored_rows = stored(workspace, "select method, target, sources[1] as source, score, n_images from estimates")
    assert len(stored_rows) == len(summary.rows) and all(np.isfinite(r["score"]) for r in stored_rows)
    ids, _ = _images(workspace, 64, need_buildings=False)
    splits = stored(workspace, "select distinct split from images where image_id in (select unnest(?))", [ids.tolist()])
    assert splits == [{"split": "val"}]  # never a test image
    own = {r["target"]: r["score"] for r in stored_rows if r["method"] == "cka" and r["source"] == r["target"]}
    assert own == pytest.approx(dict.fromkeys(TARGETS[:2], 1.0))  # a representation is itself
    agreement = stored(workspace, "select method, target, spearman, n_sources from estimator_agreement")
    assert {(r["method"], r["target"]) for r in agreement} == {(m, t) for m in ("logme", "cka") for t in TARGETS[:2]}
    assert all(-1 <= r["spearman"] <= 1 and r["n_sources"] == len(sources) - 1 for r in agreement)
    again = estimate(workspace, ["logme"], TARGETS[:1], n_images=64, progress=False)  # replaces, never duplicates
    assert workspace.db.scalar("select count(*) from estimates") == len(summary.rows)
    assert [r["score"] for r in again.rows] == [r["score"] for r in summary.rows[: len(again.rows)]]
    result = CliRunner().invoke(cli, ["estimate", "--compare", "--format", "json", "-w", str(workspace.root)])
    assert result.exit_code == 0 and {r["method"] for r in json.loads(result.output)} == {"cka", "logme"}


@pytest.mark.parametrize(
    ("args", "code", "message"),
    [
        (["--method", "oracle"], 1, "unknown method 'oracle'; the methods are logme, ridge, cka, rsa"),
        (["--sources", "reshading"], 1, "source reshading has no extracted representations"),
        (["--targets", "jigsaw"], 1, "jigsaw is a source-only task"),
        (["--images", "3"], 2, "3 is not in the range x>=4"),
    ],
)
def test_bad_estimate_input_is_one_line_and_writes_nothing(workspace, args, code, message):
    result = CliRunner().invoke(cli, ["estimate", "-w", str(workspace.root), *args])
    assert result.exit_code == code and message in result.output, result.output
    assert code == 2 or result.output.count("\n") == 1
    assert workspace.db.scalar("select count(*) from estimates") == 0


def test_an_estimated_beam_runs_only_the_first_order_transfers_it_reaches(workspace):
    from taskonomy_db.estimate import estimate

    target, settings = TARGETS[0], dict(FAST, max_order=2, beam=2, baselines=[], beam_from="estimate:cka")
    with pytest.raises(TransferError, match=f"{target} has no cka estimate for"):
        run_transfers(workspace, settings, [target], progress=False)
    assert workspace.db.scalar("select count(*) from transfers") == 0
    estimate(workspace, ["cka"], [target], n_images=64, progress=False)
    summary = run_transfers(workspace, settings, [target], progress=False)
    ranked = "select sources[1] as s from estimates where sources[1] <> target order by score desc, s"
    top = sorted(r["s"] for r in stored(workspace, ranked)[:2])
    ran = stored(workspace, 'select "order", sources from transfers order by "order", sources')
    assert ran == [{"order": 1, "sources": [s]} for s in top] + [{"order": 2, "sources": top}]
    assert summary.saved_by_estimate == len(set(EXTRACTED) - {"random"}) - 2
