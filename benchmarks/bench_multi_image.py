"""The multi-image tasks on the default profile's dataset: each siamese gold network (fixated and nonfixated
pose, egomotion, point matching) against its trivial baseline on the test tuples, with its tuples and its time;
then the pose tasks again on the same kind of dataset with 2x and 4x the buildings, to see whether the default's
few hundred tuples are what limits them.

Generates the default dataset (`tdb demo`'s default profile: 48 buildings, 1152 views at 64 px) into a
temporary folder, ingests it with the default profile's split, and trains the four tasks with its settings.
Prints one Markdown section.
"""

from __future__ import annotations

import tempfile
import time
from pathlib import Path

POSE_TASKS = ("fixated_pose", "nonfixated_pose", "egomotion")


def measure(n_buildings: int, tasks: tuple[str, ...]) -> tuple[float, dict, list]:
    """Seconds to generate and ingest, tuples per (task, split), and the training results."""
    from taskonomy_db.demo import PROFILES
    from taskonomy_db.generate import generate
    from taskonomy_db.ingest import ingest_generated
    from taskonomy_db.training import train_tasks
    from taskonomy_db.workspace import Workspace

    profile = PROFILES["default"]
    with tempfile.TemporaryDirectory() as tmp:
        start = time.perf_counter()
        generate(Path(tmp) / "data", **{**profile.dataset, "n_buildings": n_buildings}, progress=False)
        workspace = Workspace.init(Path(tmp) / "study")
        workspace.update_settings("split", profile.split)
        workspace.update_settings("train", profile.train)
        ingest_generated(workspace, Path(tmp) / "data")
        prepared = time.perf_counter() - start
        counts = {
            (r["task"], r["split"]): r["n"]
            for r in workspace.db.query("select task, split, count(*) as n from tuples group by all").to_pylist()
        }
        return prepared, counts, train_tasks(workspace, list(tasks), progress=False)


def table(counts: dict, results: list) -> None:
    print("| task | train / val / test tuples | test loss | trivial baseline | beats it | training time |")
    print("|---|---|---|---|---|---|")
    for result in results:
        tuples = " / ".join(str(counts.get((result.task, split), 0)) for split in ("train", "val", "test"))
        print(
            f"| {result.task} | {tuples} | {result.test_loss:.4f} | {result.baseline_loss:.4f} |"
            f" {'yes' if result.beats_baseline else 'no'} | {result.seconds:.0f} s |"
        )
    print()


def main() -> None:
    from taskonomy_db.demo import PROFILES
    from taskonomy_db.tuples import TUPLE_TASKS

    profile = PROFILES["default"]
    buildings = profile.dataset["n_buildings"]
    prepared, counts, results = measure(buildings, tuple(TUPLE_TASKS))
    print("## Multi-image tasks on the default dataset (bench_multi_image.py)")
    print()
    print(f"Default profile: {profile.dataset}, split {profile.split}, training {profile.train}.")
    print(f"Generating and ingesting took {prepared:.0f} s. Losses are per test tuple (pose: Euclidean distance")
    print("of standardised poses, summed over egomotion's three pairs; matching: softmax cross-entropy).")
    print()
    table(counts, results)
    for scale in (2, 4):
        _, counts, results = measure(scale * buildings, POSE_TASKS)
        print(f"The pose tasks with {scale}x the buildings ({scale * buildings}), everything else the same:")
        print()
        table(counts, results)


if __name__ == "__main__":
    main()
