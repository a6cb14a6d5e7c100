-- view: building_wins
-- grain: one row per (seed rank, target, candidate i, candidate j, building), i = j included, over the test
--        images every candidate of the target has a loss for at that seed rank: pairwise_wins counted per
--        building, so that the bootstrap can resample buildings (bootstrap_matrix) without comparing images
--        again, and per readout seed (seed_matrix)
-- columns: seed_rank (0: the losses averaged over readout seeds, as pairwise_wins compares them; 1..n: one seed
--          alone, candidate_losses), target, source_index_i, source_index_j, is_ahp_pair (neither is scratch:
--          the pair has a W' entry), building (null for a loss of an
--          image the store does not list, only ever written by hand), n_wins (images of the building where i's
--          loss is lower than j's, ties counted as half), n_images (the target's compared images in the building)
-- upstream: affinity_candidates, candidate_losses, images, tuples, tasks
-- A plain self-join of the losses, not pairwise_wins' loss lists: it serves the bootstrap, which the default
-- study runs at a few hundred images, and being written another way, its sums over buildings checking
-- pairwise_wins (tests/test_bootstrap.py) are a check of two implementations.
create or replace view building_wins as
with

candidate_counts as (
    select target, count(*) as n_candidates from affinity_candidates group by target
),

-- the images every candidate of the target has a loss for at the seed rank, with their buildings; a multi-image
-- target's losses are per tuple, stored under the tuple's id, and a tuple's building is its views'
compared_images as (
    select candidate_losses.seed_rank, candidate_losses.target, candidate_losses.image_id,
        any_value(coalesce(tuples.building, images.building)) as building
    from candidate_losses
    inner join candidate_counts on candidate_counts.target = candidate_losses.target
    left join tuples on tuples.task = candidate_losses.target and tuples.tuple_id = candidate_losses.image_id
    left join images on images.image_id = candidate_losses.image_id
        and candidate_losses.target not in (select task from tasks where n_views > 1)
    group by candidate_losses.seed_rank, candidate_losses.target, candidate_losses.image_id,
        candidate_counts.n_candidates
    having count(*) = candidate_counts.n_candidates
),

compared_losses as (
    select candidate_losses.*, compared_images.building
    from candidate_losses
    inner join compared_images
        on compared_images.seed_rank = candidate_losses.seed_rank
        and compared_images.target = candidate_losses.target
        and compared_images.image_id = candidate_losses.image_id
),

counts as (
    select
        losses_i.seed_rank,
        losses_i.target,
        losses_i.source_index as source_index_i,
        losses_j.source_index as source_index_j,
        losses_i.building,
        sum(case when losses_i.loss < losses_j.loss then 1.0 when losses_i.loss = losses_j.loss then 0.5 else 0.0 end)
            as n_wins,
        count(*) as n_images
    from compared_losses as losses_i
    inner join compared_losses as losses_j
        on losses_j.seed_rank = losses_i.seed_rank
        and losses_j.target = losses_i.target
        and losses_j.image_id = losses_i.image_id
    group by losses_i.seed_rank, losses_i.target, losses_i.source_index, losses_j.source_index, losses_i.building
),

final as (
    select
        counts.seed_rank,
        counts.target,
        counts.source_index_i,
        counts.source_index_j,
        candidates_i.is_ahp_candidate and candidates_j.is_ahp_candidate as is_ahp_pair,
        counts.building,
        counts.n_wins,
        counts.n_images
    from counts
    inner join affinity_candidates as candidates_i
        on candidates_i.target = counts.target and candidates_i.source_index = counts.source_index_i
    inner join affinity_candidates as candidates_j
        on candidates_j.target = counts.target and candidates_j.source_index = counts.source_index_j
)

select * from final;

comment on view building_wins is 'One row per (target, candidate i, candidate j, building): images of the building where i beats j (ties half), images compared.';
