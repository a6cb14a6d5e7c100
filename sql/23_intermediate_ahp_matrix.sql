-- view: ahp_matrix
-- grain: one row per (target, candidate i, candidate j), the diagonal included
-- columns: replicate (0: the study itself; bootstrap_matrix has the same columns for every bootstrap replicate),
--          target, source_index_i, source_index_j, is_ahp_pair, win_rate (W), win_rate_clipped (W clipped to
--          [0.001, 0.999], the paper's Laplace smoothing), win_ratio (W' = W / W^T: how many times more often i
--          beats j than j beats i; null unless is_ahp_pair)
-- Pairs with scratch stay (their win rates are Gain) without a ratio: W' and its eigenvector are over the AHP
-- candidates alone.
-- upstream: pairwise_wins
-- With ties counted as half, w_ji = 1 - w_ij, and the clip bounds are symmetric, so W^T needs no self-join.
create or replace macro clipped_win_rate(win_rate) as least(greatest(win_rate, 0.001), 0.999);

create or replace view ahp_matrix as
with

wins as (
    select target, source_index_i, source_index_j, is_ahp_pair, win_rate from pairwise_wins
),

clipped as (
    select target, source_index_i, source_index_j, is_ahp_pair, win_rate,
        clipped_win_rate(win_rate) as win_rate_clipped
    from wins
),

final as (
    select
        0 as replicate,
        target,
        source_index_i,
        source_index_j,
        is_ahp_pair,
        win_rate,
        win_rate_clipped,
        case when is_ahp_pair then win_rate_clipped / (1 - win_rate_clipped) end as win_ratio
    from clipped
)

select * from final;

comment on view ahp_matrix is 'One row per (target, i, j): win rate W, W clipped to [0.001, 0.999], and W'' = W / W^T.';
