-- view: seed_matrix
-- grain: one row per (seed rank, target, candidate i, candidate j), the diagonal included, for targets whose
--        candidates were measured with several readout seeds: ahp_matrix from one seed's readouts alone
-- columns: replicate (the seed rank, 1..n_seeds), target, source_index_i, source_index_j, is_ahp_pair, n_wins,
--          n_images, win_rate, win_rate_clipped, win_ratio (as in ahp_matrix)
-- upstream: building_wins
-- Named replicate so that ahp_results reads it as it reads ahp_matrix and bootstrap_matrix: the same AHP,
-- Quality and Gain for each seed (seed_affinity).
create or replace view seed_matrix as
with

counts as (
    select seed_rank as replicate, target, source_index_i, source_index_j, any_value(is_ahp_pair) as is_ahp_pair,
        sum(n_wins) as n_wins, sum(n_images) as n_images
    from building_wins
    where seed_rank > 0
    group by seed_rank, target, source_index_i, source_index_j
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
    from counts
)

select * from final;

comment on view seed_matrix is 'One row per (seed rank, target, i, j): ahp_matrix from one readout seed alone, for targets with several seeds.';
