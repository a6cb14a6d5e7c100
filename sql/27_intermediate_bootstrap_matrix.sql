-- view: bootstrap_matrix
-- grain: one row per (replicate, target, candidate i, candidate j), the diagonal included: ahp_matrix for every
--        replicate of bootstrap_weights, replicate 0 equal to ahp_matrix
-- columns: replicate, target, source_index_i, source_index_j, is_ahp_pair, n_wins, n_images, win_rate,
--          win_rate_clipped, win_ratio (as in ahp_matrix, each building's counts weighted by how many times
--          the replicate drew it, times the replicate's scale: n_wins and n_images are then no longer whole)
-- upstream: building_wins, bootstrap_weights, affinity_candidates
-- A target none of whose images is in the buildings a replicate drew has no rows in it.
create or replace view bootstrap_matrix as
with

weighted as (
    select
        bootstrap_weights.replicate,
        building_wins.target,
        building_wins.source_index_i,
        building_wins.source_index_j,
        -- whole weights times half-integer counts: exact sums in any order; the scale applied once after
        sum(bootstrap_weights.weight * building_wins.n_wins) * any_value(bootstrap_weights.scale) as n_wins,
        sum(bootstrap_weights.weight * building_wins.n_images) * any_value(bootstrap_weights.scale) as n_images
    from building_wins
    inner join bootstrap_weights on bootstrap_weights.building = building_wins.building
    where building_wins.seed_rank = 0
    group by bootstrap_weights.replicate, building_wins.target, building_wins.source_index_i,
        building_wins.source_index_j
),

rates as (
    select
        weighted.replicate,
        weighted.target,
        weighted.source_index_i,
        weighted.source_index_j,
        candidates_i.is_ahp_candidate and candidates_j.is_ahp_candidate as is_ahp_pair,
        weighted.n_wins,
        weighted.n_images,
        weighted.n_wins / weighted.n_images as win_rate
    from weighted
    inner join affinity_candidates as candidates_i
        on candidates_i.target = weighted.target and candidates_i.source_index = weighted.source_index_i
    inner join affinity_candidates as candidates_j
        on candidates_j.target = weighted.target and candidates_j.source_index = weighted.source_index_j
    where weighted.n_images > 0
),

final as (
    select
        *,
        clipped_win_rate(n_wins, n_images) as win_rate_clipped,
        case
            when is_ahp_pair then clipped_win_rate(n_wins, n_images) / (1 - clipped_win_rate(n_wins, n_images))
        end as win_ratio
    from rates
)

select * from final;

comment on view bootstrap_matrix is 'One row per (replicate, target, i, j): ahp_matrix with test buildings resampled; replicate 0 is the study.';
