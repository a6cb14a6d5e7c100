-- view: bootstrap_matrix
-- grain: one row per (replicate, target, candidate i, candidate j), the diagonal included: ahp_matrix for every
--        replicate of bootstrap_weights, replicate 0 equal to ahp_matrix
-- columns: replicate, target, source_index_i, source_index_j, is_ahp_pair, n_wins, n_images, win_rate,
--          win_rate_clipped, win_ratio (as in ahp_matrix, each building's counts weighted by how many times
--          the replicate drew it, times the replicate's scale: n_wins and n_images are then no longer whole)
-- upstream: building_wins, bootstrap_weights
-- A target none of whose images is in the buildings a replicate drew has no rows in it.
create or replace view bootstrap_matrix as
with

weighted as (
    select
        bootstrap_weights.replicate,
        building_wins.target,
        building_wins.source_index_i,
        building_wins.source_index_j,
        any_value(building_wins.is_ahp_pair) as is_ahp_pair,
        -- whole weights times half-integer counts: exact sums in any order; the scale applied once after
        sum(bootstrap_weights.weight * building_wins.n_wins) * any_value(bootstrap_weights.scale) as n_wins,
        sum(bootstrap_weights.weight * building_wins.n_images) * any_value(bootstrap_weights.scale) as n_images
    from building_wins
    inner join bootstrap_weights on bootstrap_weights.building = building_wins.building
    where building_wins.seed_rank = 0
    group by bootstrap_weights.replicate, building_wins.target, building_wins.source_index_i,
        building_wins.source_index_j
),

final as (
    select
        replicate,
        target,
        source_index_i,
        source_index_j,
        is_ahp_pair,
        n_wins,
        n_images,
        n_wins / n_images as win_rate,
        clipped_win_rate(n_wins, n_images) as win_rate_clipped,
        ahp_win_ratio(clipped_win_rate(n_wins, n_images), is_ahp_pair) as win_ratio
    from weighted
    where n_images > 0
)

select * from final;

comment on view bootstrap_matrix is 'One row per (replicate, target, i, j): ahp_matrix with test buildings resampled; replicate 0 is the study.';
