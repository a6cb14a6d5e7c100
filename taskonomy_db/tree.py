"""The task similarity tree: agglomerative clustering of tasks by their transferring-out pattern.

A task's pattern is how it ranks as a first-order source for every target. Ranks rather than raw affinities
because AHP affinities are shares of one target's total, so a target with a few dominant sources squeezes every
other source towards zero; ranking within each target keeps the paper's ordinal view (only "which source is
better" counts) and weighs every target equally. Euclidean distance between rank vectors with Ward linkage then
merges tasks that are good or bad sources for the same targets. On the paper's released 16k affinities these
choices recover its four groups (3D, 2D, low-dimensional geometric, semantic) exactly at four clusters.
"""

from __future__ import annotations

import os
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from scipy.cluster.hierarchy import fcluster, linkage, to_tree
from scipy.stats import rankdata

from taskonomy_db.affinity import AffinityError, AffinityMatrix, first_order_matrix
from taskonomy_db.db import Database
from taskonomy_db.names import NETWORK_BASELINES

# The groups of the paper's task similarity tree (the paper's Figure 13); denoising stands apart.
PAPER_GROUPS: dict[str, tuple[str, ...]] = {
    "3D": (
        "normal",
        "segment_unsup25d",
        "principal_curvature",
        "keypoints3d",
        "depth_zbuffer",
        "depth_euclidean",
        "edge_occlusion",
        "reshading",
    ),
    "2D": ("edge_texture", "autoencoding", "keypoints2d", "segment_unsup2d", "colorization", "inpainting"),
    "geometric": (
        "room_layout",
        "vanishing_point",
        "point_matching",
        "egomotion",
        "fixated_pose",
        "nonfixated_pose",
        "jigsaw",
        "random",
    ),
    "semantic": ("segment_semantic", "class_object", "class_scene"),
}


@dataclass(frozen=True)
class TaskTree:
    origin: str
    tasks: list[str]  # the leaves: every first-order source except the baselines gold and scratch
    targets: list[str]  # the columns of the transferring-out pattern
    features: np.ndarray  # tasks x targets: rank as a source for each target (1 = best)
    linkage_matrix: np.ndarray  # scipy's (n - 1) x 4 merge table

    def clusters(self, n_clusters: int) -> dict[str, int]:
        """Cut the tree into n_clusters groups, numbered 1.. in the dendrogram's left-to-right order."""
        if not 1 <= n_clusters <= len(self.tasks):
            raise AffinityError(f"--clusters must be between 1 and {len(self.tasks)} (the number of tasks)")
        labels = fcluster(self.linkage_matrix, n_clusters, criterion="maxclust")
        renumber: dict[int, int] = {}
        for leaf in to_tree(self.linkage_matrix).pre_order():
            renumber.setdefault(int(labels[leaf]), len(renumber) + 1)
        return {task: renumber[int(label)] for task, label in zip(self.tasks, labels, strict=True)}


def members_by_cluster(clusters: dict[str, int]) -> list[list[str]]:
    """The tasks of each cluster that has any, sorted, in cluster order."""
    members: dict[int, list[str]] = {}
    for task, cluster in clusters.items():
        members.setdefault(cluster, []).append(task)
    return [sorted(tasks) for _, tasks in sorted(members.items())]


def build_tree(db: Database, origin: str | None = None) -> TaskTree:
    """Cluster the active (or given) origin's first-order affinities into the task similarity tree."""
    return tree_from_matrix(first_order_matrix(db, origin))


def tree_from_matrix(matrix: AffinityMatrix) -> TaskTree:
    """The task similarity tree of one first-order source x target affinity matrix."""
    tasks = [s for s in matrix.sources if s not in NETWORK_BASELINES]
    if len(tasks) < 2 or not matrix.targets:
        raise AffinityError(
            f"the tree needs first-order affinities of at least two source tasks; {matrix.origin} has {len(tasks)}"
        )
    values = np.array(
        [[np.nan if v is None else v for v in matrix.values[matrix.sources.index(t)]] for t in tasks], dtype=float
    )
    # An unmeasured transfer ranks below every measured one for that target.
    values = np.where(np.isnan(values), -np.inf, values)
    features = np.column_stack([rankdata(-column, method="average") for column in values.T])
    linkage_matrix = linkage(features, method="ward", metric="euclidean")
    return TaskTree(matrix.origin, tasks, list(matrix.targets), features, linkage_matrix)


def adjusted_rand_index(labels_a: Sequence[object], labels_b: Sequence[object]) -> float:
    """Hubert and Arabie's adjusted Rand index of two labelings of the same items (1 = identical partitions)."""
    if len(labels_a) != len(labels_b):
        raise ValueError("labelings differ in length")

    def pairs(count: int) -> float:
        return count * (count - 1) / 2

    together = sum(pairs(n) for n in Counter(zip(labels_a, labels_b, strict=True)).values())
    in_a = sum(pairs(n) for n in Counter(labels_a).values())
    in_b = sum(pairs(n) for n in Counter(labels_b).values())
    expected = in_a * in_b / pairs(len(labels_a)) if len(labels_a) > 1 else 0.0
    maximum = (in_a + in_b) / 2
    return 1.0 if maximum == expected else (together - expected) / (maximum - expected)


def agreement_with_paper(clusters: dict[str, int]) -> tuple[float, int]:
    """ARI of the clusters with the paper's four groups over the tasks both name, and how many tasks that is."""
    truth = {task: group for group, tasks in PAPER_GROUPS.items() for task in tasks}
    shared = [t for t in clusters if t in truth]
    return adjusted_rand_index([truth[t] for t in shared], [clusters[t] for t in shared]), len(shared)


def render_text(tree: TaskTree, clusters: dict[str, int] | None = None) -> str:
    """The dendrogram as indented text: merge heights on inner nodes, tasks (with cluster numbers) on leaves."""
    lines: list[str] = []

    def walk(node: object, prefix: str, is_last: bool, is_root: bool) -> None:
        branch = "" if is_root else ("`-- " if is_last else "|-- ")
        if node.is_leaf():
            task = tree.tasks[node.id]
            suffix = f"  [{clusters[task]}]" if clusters else ""
            lines.append(f"{prefix}{branch}{task}{suffix}")
            return
        lines.append(f"{prefix}{branch}+ {node.dist:.2f}")
        child_prefix = prefix + ("" if is_root else ("    " if is_last else "|   "))
        walk(node.get_left(), child_prefix, False, False)
        walk(node.get_right(), child_prefix, True, False)

    walk(to_tree(tree.linkage_matrix), "", True, True)
    return "\n".join(lines)


def _subtree_heights(tree: TaskTree) -> dict[frozenset[str], float]:
    """The merge height of every subtree, keyed by its leaves."""
    heights: dict[frozenset[str], float] = {}
    stack = [to_tree(tree.linkage_matrix)]
    while stack:
        node = stack.pop()
        heights[frozenset(tree.tasks[i] for i in node.pre_order())] = float(node.dist)
        stack += [child for child in (node.left, node.right) if child is not None]
    return heights


def draw_dendrogram(
    tree: TaskTree, clusters: dict[str, int], out_dir: Path, support: dict[int, float] | None = None
) -> tuple[Path, Path]:
    """Write task_tree.png and task_tree.svg into out_dir, branches and leaves coloured by cluster, and each
    cluster's bootstrap `support` (cluster number -> share) written at its top node when given."""
    os.environ.setdefault("MPLBACKEND", "Agg")
    import matplotlib

    matplotlib.use("Agg")  # files only: no display on servers and in tests
    import matplotlib.pyplot as plt
    from scipy.cluster.hierarchy import dendrogram

    out_dir.mkdir(parents=True, exist_ok=True)
    n_clusters = max(clusters.values())
    figure, axes = plt.subplots(figsize=(10, 0.32 * len(tree.tasks) + 1.5))
    threshold = tree.linkage_matrix[-(n_clusters - 1), 2] if n_clusters > 1 else None
    drawn = dendrogram(
        tree.linkage_matrix,
        labels=tree.tasks,
        orientation="left",
        color_threshold=threshold if threshold is not None else 0,
        above_threshold_color="0.5",
        ax=axes,
    )
    # Leaf labels take their cluster's branch colour.
    leaf_colors = dict(zip(drawn["ivl"], drawn["leaves_color_list"], strict=True))
    for label in axes.get_yticklabels():
        label.set_color(leaf_colors.get(label.get_text(), "black") if n_clusters > 1 else "black")
    axes.set_xlabel("Ward distance between transferring-out rank patterns")
    title = f"Task similarity tree ({tree.origin}, {n_clusters} clusters)"
    if support:
        title += "; % = bootstrap support of each cluster"
        heights = _subtree_heights(tree)
        rows = {task: 5.0 + 10.0 * position for position, task in enumerate(drawn["ivl"])}  # scipy's leaf spacing
        for number, members in enumerate(members_by_cluster(clusters), start=1):
            if number in support:
                y = float(np.mean([rows[t] for t in members]))
                axes.annotate(f"{support[number]:.0%}", (heights[frozenset(members)], y), fontsize=8, ha="right")
    axes.set_title(title)
    figure.tight_layout()
    png, svg = out_dir / "task_tree.png", out_dir / "task_tree.svg"
    figure.savefig(png, dpi=120)
    figure.savefig(svg)
    plt.close(figure)
    return png, svg
