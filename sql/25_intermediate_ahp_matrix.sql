-- view: ahp_matrix
-- grain: one row per (target, candidate i, candidate j), the diagonal included
-- columns: replicate (0: the study itself; bootstrap_matrix has the same columns for every bootstrap replicate),
--          target, source_index_i, source_index_j, is_ahp_pair, win_rate (W), win_rate_clipped (W clipped to
--          [0.001, 0.999], as the paper did; or, with the variable win_rate_smoothing = a > 0,
--          (wins + a) / (n + 2a), which keeps how many images a rate rests on), win_ratio (W' = W / W^T: how many times more often i
--          beats j than j beats i; null unless is_ahp_pair)
-- Pairs with scratch stay (their win rates are Gain) without a ratio: W' and its eigenvector are over the AHP
-- candidates alone.
-- upstream: pairwise_wins
-- With ties counted as half, w_ji = 1 - w_ij, and both the clip and (w + a) / (n + 2a) keep that symmetry, so
-- W^T needs no self-join. tdb sets win_rate_smoothing from [analysis] smoothing (default 0: the clip).
create or replace macro clipped_win_rate(n_wins, n_images) as
    case
        when coalesce(getvariable('win_rate_smoothing'), 0) > 0
            then (n_wins + getvariable('win_rate_smoothing')) / (n_images + 2 * getvariable('win_rate_smoothing'))
        else least(greatest(n_wins / n_images, 0.001), 0.999)
    end;

-- W' of a pair from its clipped win rate; null for a pair with scratch in it (no AHP candidate)
create or replace macro ahp_win_ratio(win_rate_clipped, is_ahp_pair) as
    case when is_ahp_pair then win_rate_clipped / (1 - win_rate_clipped) end;

create or replace view ahp_matrix as
with

wins as (
    select target, source_index_i, source_index_j, is_ahp_pair, n_wins, n_images, win_rate from pairwise_wins
),

clipped as (
    select target, source_index_i, source_index_j, is_ahp_pair, win_rate,
        clipped_win_rate(n_wins, n_images) as win_rate_clipped
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
        ahp_win_ratio(win_rate_clipped, is_ahp_pair) as win_ratio
    from clipped
)

select * from final;

comment on view ahp_matrix is 'One row per (target, i, j): win rate W, W clipped to [0.001, 0.999] (or smoothed), and W'' = W / W^T.';
