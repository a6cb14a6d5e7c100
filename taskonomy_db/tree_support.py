"""Bootstrap support of the task similarity tree: how often each cluster of the study's tree recurs when the
tree is built again from every building-bootstrap replicate of the first-order affinities (the SQL view
`bootstrap_affinity`), cut into the same number of clusters."""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass

from taskonomy_db.affinity import AffinityError, AffinityMatrix, bootstrap_caveat
from taskonomy_db.db import Database
from taskonomy_db.tree import TaskTree, members_by_cluster, tree_from_matrix


@dataclass(frozen=True)
class ClusterSupport:
    """The study's clusters with their support, and the consensus: the clusters most replicates have."""

    replicates: int
    support: dict[int, float]  # the study's cluster number -> share of replicates with exactly that cluster
    consensus: list[list[str]]  # clusters (of any replicate) found in more than half of the replicates


def replicate_matrices(db: Database) -> dict[int, AffinityMatrix]:
    """Each replicate's first-order source x target affinities, replicate 0 the study's."""
    rows = db.query(
        "select replicate, sources[1] as source, target, affinity from bootstrap_affinity"
        ' where "order" = 1 and affinity is not null order by replicate, source, target'
    ).to_pylist()
    by_replicate: dict[int, dict[tuple[str, str], float]] = {}
    for r in rows:
        by_replicate.setdefault(r["replicate"], {})[(r["source"], r["target"])] = r["affinity"]
    return {replicate: AffinityMatrix.from_cells("measured", cells) for replicate, cells in by_replicate.items()}


def cluster_support(db: Database, study: TaskTree, n_clusters: int) -> ClusterSupport:
    """Support of each of `study`'s `n_clusters` clusters over the bootstrap replicates of the measured study."""
    matrices = replicate_matrices(db)
    if len(matrices) <= 1:
        raise AffinityError(bootstrap_caveat(db)[2] or "no bootstrap replicate has first-order affinities")
    clusters = {frozenset(m) for m in members_by_cluster(study.clusters(n_clusters))}
    found: Counter[frozenset[str]] = Counter()
    replicates = 0
    for replicate, matrix in sorted(matrices.items()):
        if replicate == 0:
            continue
        tree = tree_from_matrix(matrix)
        if tree.tasks != study.tasks or tree.targets != study.targets:
            continue  # a replicate that lost a task's every affinity poses another question
        replicates += 1
        found.update(frozenset(m) for m in members_by_cluster(tree.clusters(n_clusters)))
    if not replicates:
        raise AffinityError("no bootstrap replicate has first-order affinities for every task of the study")
    number_of = {frozenset(m): k for k, m in enumerate(members_by_cluster(study.clusters(n_clusters)), start=1)}
    return ClusterSupport(
        replicates=replicates,
        support={number_of[c]: found[c] / replicates for c in sorted(clusters, key=number_of.get)},
        consensus=sorted(sorted(c) for c, n in found.items() if n > replicates / 2),
    )
