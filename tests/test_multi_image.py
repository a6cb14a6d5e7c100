"""The multi-image tasks end to end on generated data: siamese networks train on tuples, their exported encoders
are single-image sources like any other, and readouts into them read every view of a tuple; per-tuple losses
reach `affinity` through the same views."""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pytest
import torch

from taskonomy_db.affinity import evidence_store
from taskonomy_db.data import load_task_data
from taskonomy_db.encoders import export_encoders
from taskonomy_db.errors import DataError
from taskonomy_db.extract import extract
from taskonomy_db.generate import generate
from taskonomy_db.ingest import ingest_generated
from taskonomy_db.models.networks import NetworkConfig, create_task_network
from taskonomy_db.readout import TransferError
from taskonomy_db.significance import building_halves
from taskonomy_db.tasks import get_task
from taskonomy_db.training import load_gold_network, train_tasks
from taskonomy_db.transfer import prepare_transfers, run_transfers
from taskonomy_db.transfer_store import finished_keys
from taskonomy_db.tuples import TUPLE_TASKS
from taskonomy_db.workspace import Workspace

SIZE = 32
SINGLE = ["autoencoding", "depth_zbuffer"]


@pytest.fixture(scope="module")
def study(tmp_path_factory: pytest.TempPathFactory) -> Workspace:
    previous = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        data = tmp_path_factory.mktemp("generated") / "data"
        generate(data, n_buildings=6, rooms_per_building=1, points_per_room=4, views_per_point=3, size=SIZE,
                 workers=1, progress=False)  # fmt: skip
        workspace = Workspace.init(tmp_path_factory.mktemp("multi") / "study")
        train = {"image_size": SIZE, "epochs": 2, "width": 8, "batch_size": 8, "threads": 1}
        workspace.update_settings("train", train)
        workspace.update_settings("split", {"train": 1, "val": 1, "test": 1})
        ingest_generated(workspace, data)
        tasks = [*TUPLE_TASKS, *SINGLE]
        train_tasks(workspace, tasks, progress=False)
        export_encoders(workspace, [*tasks, "random"])
        extract(workspace, [*tasks, "random"], progress=False)
        overrides = {"transfer_images": 12, "holdout_images": 12, "max_steps": 30, "eval_every": 5, "max_order": 1,
                     "workers": 1}  # fmt: skip
        run_transfers(workspace, overrides, progress=False)
    finally:
        torch.set_num_threads(previous)
    return workspace


def count_test_tuples(workspace: Workspace) -> dict[str, int]:
    rows = workspace.db.query("select task, count(*) as n from tuples where split = 'test' group by 1").to_pylist()
    return {r["task"]: r["n"] for r in rows}


def test_a_siamese_network_reads_each_view_through_one_encoder():
    spec = get_task("egomotion")
    network = create_task_network(spec, NetworkConfig(input_size=SIZE, width=8)).eval()
    views = torch.rand(2, 3, 3, SIZE, SIZE)
    features = network.forward_features(views)
    single = [network.encoder(views[:, k]) for k in range(3)]
    torch.testing.assert_close(features, torch.cat(single, dim=1))
    assert network(views).shape == (2, 18)


@pytest.mark.parametrize("task", TUPLE_TASKS)
def test_the_loss_is_per_tuple_and_training_steps_decrease_it(task: str, study: Workspace):
    spec = get_task(task)
    data = load_task_data(study, task, ["train"], size=SIZE, progress=False)
    augmented = data.batch(torch.arange(4), train=True, generator=torch.Generator().manual_seed(0))
    assert augmented.inputs.shape == (4, spec.n_views, 3, SIZE, SIZE)  # jittered view by view, not mirrored
    torch.manual_seed(0)
    network = create_task_network(spec, NetworkConfig(input_size=SIZE, width=8))
    optimizer = torch.optim.Adam(network.parameters(), lr=3e-3)
    batch = data.batch(torch.arange(min(8, len(data))), train=False)  # one fixed batch: its loss must fall
    losses = []
    for _ in range(15):
        per_tuple = spec.loss(network(batch.inputs), batch.targets, batch.masks)
        assert per_tuple.shape == (len(batch.targets),) and torch.isfinite(per_tuple).all()
        optimizer.zero_grad()
        per_tuple.mean().backward()
        optimizer.step()
        losses.append(per_tuple.mean().item())
    assert np.mean(losses[-3:]) < losses[0]


def test_tuple_data_holds_every_view_and_its_label(study):
    data = load_task_data(study, "egomotion", "test", size=SIZE, progress=False)
    stored = study.db.query("select tuple_id, image_ids, label from tuples where task = 'egomotion' and split = 'test'")
    assert data.image_ids.tolist() == sorted(stored.column("tuple_id").to_pylist())
    first = stored.to_pylist()[0]
    row = int(np.flatnonzero(data.image_ids == first["tuple_id"])[0])
    assert data.views[row].tolist() == first["image_ids"]
    rgb = load_task_data(study, "autoencoding", None, image_ids=first["image_ids"], size=SIZE, progress=False)
    in_order = [rgb.image_ids.tolist().index(image_id) for image_id in first["image_ids"]]
    torch.testing.assert_close(data.rgb[row], rgb.rgb[in_order])  # the views, in the tuple's order
    torch.testing.assert_close(data.labels[row], torch.tensor(first["label"], dtype=torch.float32))


def test_gold_networks_train_and_every_direction_reaches_affinity(study):
    gold = study.db.query("select task, n_test_images, test_loss from gold_results").to_pylist()
    tuples = count_test_tuples(study)
    for row in gold:
        if row["task"] in TUPLE_TASKS:
            assert row["n_test_images"] == tuples[row["task"]]  # one loss per test tuple
        assert np.isfinite(row["test_loss"])
    first_order = study.db.query('select target, sources[1] as source from affinity where "order" = 1').to_pylist()
    pairs = {(r["target"], r["source"]) for r in first_order}
    for task in TUPLE_TASKS:
        assert all((task, source) in pairs for source in SINGLE)  # into the multi-image task
        assert all((target, task) in pairs for target in SINGLE)  # from it


def test_losses_of_a_tuple_target_are_per_tuple_and_bootstrap_by_building(study):
    losses = study.db.query(
        """
        select transfers.target, count(distinct losses.image_id) as n
        from losses join transfers using (transfer_id)
        where transfers.target in (select unnest(?)) and transfers.kind = 'transfer'
        group by 1
        """,
        [list(TUPLE_TASKS)],
    ).to_pylist()
    tuples = count_test_tuples(study)
    assert {r["target"]: r["n"] for r in losses} == tuples
    unplaced = study.db.query(
        "select count(*) as n from building_wins where target in (select unnest(?)) and building is null",
        [list(TUPLE_TASKS)],
    )
    assert unplaced.to_pylist() == [{"n": 0}]  # every tuple's loss is placed in its building


def test_a_workspace_without_cameras_has_no_tuple_data(tmp_path: Path):
    workspace = Workspace.init(tmp_path / "empty")
    with pytest.raises(DataError, match="no egomotion tuples"):
        load_task_data(workspace, "egomotion", "train", size=SIZE, progress=False)


def test_a_transfer_image_set_too_small_for_any_tuple_is_one_line_and_writes_nothing(study):
    before = study.db.query("select count(*) as n from transfers").to_pylist()
    overrides = {"transfer_images": 2, "holdout_images": 12, "max_order": 1, "workers": 1}
    with pytest.raises(
        TransferError, match="egomotion has no label on any of the 2 fit images.*has all its views among them"
    ) as e:
        run_transfers(study, overrides, targets=["egomotion"], sources=SINGLE, progress=False)
    assert "\n" not in str(e.value)
    assert study.db.query("select count(*) as n from transfers").to_pylist() == before


def test_the_siamese_heads_batch_norm_holds_the_statistics_of_the_kept_weights(study):
    network, _ = load_gold_network(study, "fixated_pose")
    train = load_task_data(study, "fixated_pose", "train", size=SIZE, progress=False)
    linear, norm = network.decoder.layers[1], network.decoder.layers[2]
    with torch.no_grad():
        inputs = train.batch(torch.arange(len(train))).inputs
        values = linear(network.decoder.layers[0](network.forward_features(inputs))).double()
    torch.testing.assert_close(norm.running_mean.double(), values.mean(0), atol=1e-4, rtol=1e-4)
    torch.testing.assert_close(norm.running_var.double(), values.var(0), atol=1e-4, rtol=1e-3)


def test_cross_fitting_halves_place_every_tuple_loss_in_its_building(study):
    transfers = study.db.query("select transfer_id from candidate_transfers").column("transfer_id").to_pylist()
    halves = building_halves(study.db, 0)
    counted = {}
    for buildings in halves:
        with evidence_store(study.db, transfers, buildings) as store:
            rows = store.query(
                "select transfers.target, losses.image_id from losses join transfers using (transfer_id)"
                " where transfers.target in (select unnest(?))",
                [list(TUPLE_TASKS)],
            ).to_pylist()
        for row in rows:
            counted[row["target"], row["image_id"]] = counted.get((row["target"], row["image_id"]), 0) + 1
            placed = study.db.scalar("select building from tuples where tuple_id = ?", [row["image_id"]])
            assert placed in buildings
    all_losses = study.db.query(
        "select distinct transfers.target, losses.image_id from losses join transfers using (transfer_id)"
        " where transfer_id in (select unnest(?)) and transfers.target in (select unnest(?))",
        [transfers, list(TUPLE_TASKS)],
    ).to_pylist()
    assert {(r["target"], r["image_id"]) for r in all_losses} == set(counted)  # none dropped


def test_tuples_drawn_anew_are_measured_again(study, tmp_path):
    root = tmp_path / "copy"
    shutil.copytree(study.root, root)
    workspace = Workspace.open(root)
    overrides = {"transfer_images": 12, "holdout_images": 12, "max_steps": 30, "eval_every": 5, "max_order": 1}

    def key() -> str:
        plan = prepare_transfers(workspace, overrides, ["egomotion"], ["autoencoding"], progress=False)
        return plan.job("transfer", "egomotion", ["autoencoding"], 1).key

    before = key()
    assert finished_keys(workspace, [before]) == {before}  # the fixture's transfer, recognised as done
    with workspace.db.transaction() as con:  # as a re-ingest that redraws a building's triples would
        con.execute("update tuples set label = list_reverse(label) where task = 'egomotion'")
    after = key()
    assert after != before and finished_keys(workspace, [after]) == set()
