-- view: pairwise_wins
-- grain: one row per (target, candidate i, candidate j), i = j included, over the test images every candidate
--        of the target has a loss for
-- columns: target, source_index_i, source_index_j, sources_i, sources_j, is_ahp_pair (both are AHP candidates:
--          neither is scratch), n_wins (images where i's loss is lower
--          than j's, ties counted as half), n_images, win_rate (n_wins / n_images; 0.5 on the diagonal)
-- upstream: affinity_candidates, candidate_losses (seed rank 0: each candidate's losses averaged over its seeds)
create or replace view pairwise_wins as
with

-- target_number: the heavy steps below group hundreds of millions of rows, faster by an integer than a string
candidates as (
    select dense_rank() over (order by target) as target_number, target, source_index, sources, is_ahp_candidate
    from affinity_candidates
),

compared_losses as not materialized (
    select candidates.target_number, candidates.source_index, candidate_losses.image_id, candidate_losses.loss
    from candidate_losses
    inner join candidates
        on candidates.target = candidate_losses.target and candidates.source_index = candidate_losses.source_index
    where candidate_losses.seed_rank = 0
),

-- One pass over the losses: each candidate's losses in image order, plus a fingerprint of its image set
-- (count, sum and xor of hashes) to check that the lists of one target line up image by image.
candidate_lists as (
    select
        target_number,
        source_index,
        list(loss order by image_id) as loss_list,
        count(*) as n_images,
        sum(image_id) as image_id_sum,
        bit_xor(hash(image_id)) as image_id_hash
    from compared_losses
    group by target_number, source_index
),

aligned_targets as (
    select target_number
    from candidate_lists
    group by target_number
    having count(distinct (n_images, image_id_sum, image_id_hash)) = 1
),

aligned_lists as (
    select candidate_lists.target_number, candidate_lists.source_index, candidate_lists.loss_list,
        candidate_lists.n_images
    from candidate_lists
    semi join aligned_targets on aligned_targets.target_number = candidate_lists.target_number
),

-- Targets whose candidates were tested on different images (not the case for `tdb transfer`, which tests every
-- transfer of a target on the same images): keep only the images every candidate has, then list again.
unaligned_losses as (
    select compared_losses.*
    from compared_losses
    anti join aligned_targets on aligned_targets.target_number = compared_losses.target_number
),

common_images as (
    select unaligned_losses.target_number, unaligned_losses.image_id
    from unaligned_losses
    group by unaligned_losses.target_number, unaligned_losses.image_id
    having count(*) = (
        select count(*) from candidates where candidates.target_number = unaligned_losses.target_number
    )
),

realigned_lists as (
    select
        unaligned_losses.target_number,
        unaligned_losses.source_index,
        list(unaligned_losses.loss order by unaligned_losses.image_id) as loss_list,
        count(*) as n_images
    from unaligned_losses
    semi join common_images
        on common_images.target_number = unaligned_losses.target_number
        and common_images.image_id = unaligned_losses.image_id
    group by unaligned_losses.target_number, unaligned_losses.source_index
),

loss_lists as (
    select * from aligned_lists
    union all
    select * from realigned_lists
),

-- Every unordered pair of a target's candidates with both loss lists, keyed by one BIGINT (target_number,
-- source_index_i and source_index_j in bits 40 and up, 20-39 and 0-19): cheaper to group 400M rows by than three
-- columns, and computed here, once per pair, rather than in the unnesting select, where it ran once per image.
-- Two branches, each a pipeline of its own: a target's lists are too few rows for DuckDB to split one scan
-- between threads, so with a single join the costly part below (copying each pair's second list out of the
-- hash table, unnesting 400M values, summing) ran on one core. Splitting by target parity runs it on two
-- (8.4 s -> 5.2 s for the whole affinity view on the benchmark's 20.8M losses, 2 cores; four branches measured
-- 5.6 s there). The branch is written out twice on purpose: one shared CTE filtered by parity in each branch
-- measured 8.2 s, as slow as the single join. Not materialized: as a table it would hold a copy of every
-- pair's lists.
upper_pairs as not materialized (
    select
        (lists_i.target_number::bigint << 40) | (lists_i.source_index::bigint << 20) | lists_j.source_index as pair_key,
        lists_i.loss_list as losses_i,
        lists_j.loss_list as losses_j
    from loss_lists as lists_i
    inner join loss_lists as lists_j
        on lists_j.target_number = lists_i.target_number and lists_j.source_index > lists_i.source_index
    where lists_i.target_number % 2 = 0 and lists_j.target_number % 2 = 0
    union all
    select
        (lists_i.target_number::bigint << 40) | (lists_i.source_index::bigint << 20) | lists_j.source_index as pair_key,
        lists_i.loss_list as losses_i,
        lists_j.loss_list as losses_j
    from loss_lists as lists_i
    inner join loss_lists as lists_j
        on lists_j.target_number = lists_i.target_number and lists_j.source_index > lists_i.source_index
    where lists_i.target_number % 2 = 1 and lists_j.target_number % 2 = 1
),

-- Two unnests in one select list walk the lists in step: one row per (pair, image). Unnesting aligned lists
-- is several times faster than joining the losses to themselves on image_id. Measured alternatives to this step
-- (DuckDB 2.0, 2 cores, before the two branches above): lambdas over list_zip 17-21 s, unnesting list_zip 15 s,
-- unnesting an index range with list_extract 20 s; and in place of the whole view, per-image dense ranks packed
-- 8 images to a UBIGINT and compared with SWAR bit tricks 7.3 s (the rank window alone ~4 s).
image_comparisons as (
    select pair_key, unnest(losses_i) as loss_i, unnest(losses_j) as loss_j
    from upper_pairs
),

-- sign(loss_j - loss_i) is +1 where i is better, -1 where j is, 0 on a tie, so wins with ties as half are
-- (n + net) / 2 for i and (n - net) / 2 for j: one pass over each unordered pair serves both directions.
upper_net_wins as materialized (
    select
        pair_key >> 40 as target_number,
        ((pair_key >> 20) & 1048575)::integer as source_index_i,
        (pair_key & 1048575)::integer as source_index_j,
        net_wins
    from (
        select pair_key, sum(sign(loss_j - loss_i))::double as net_wins
        from image_comparisons
        group by pair_key
    )
),

-- every candidate of a target has the same common images, so the count is per target (read from n_images, not
-- len(loss_list): a scan of the lists would copy them all again)
target_images as (
    select target_number, max(n_images) as n_images from loss_lists group by target_number
),

upper_counts as (
    select
        upper_net_wins.target_number,
        upper_net_wins.source_index_i,
        upper_net_wins.source_index_j,
        upper_net_wins.net_wins,
        target_images.n_images
    from upper_net_wins
    inner join target_images on target_images.target_number = upper_net_wins.target_number
),

diagonal_counts as (
    select loss_lists.target_number, loss_lists.source_index, target_images.n_images
    from loss_lists
    inner join target_images on target_images.target_number = loss_lists.target_number
),

all_pairs as (
    select target_number, source_index_i, source_index_j, (n_images + net_wins) / 2 as n_wins, n_images
    from upper_counts
    union all
    select target_number, source_index_j, source_index_i, (n_images - net_wins) / 2, n_images
    from upper_counts
    union all
    select target_number, source_index, source_index, n_images / 2, n_images
    from diagonal_counts
),

final as (
    select
        candidates_i.target,
        all_pairs.source_index_i,
        all_pairs.source_index_j,
        candidates_i.sources as sources_i,
        candidates_j.sources as sources_j,
        candidates_i.is_ahp_candidate and candidates_j.is_ahp_candidate as is_ahp_pair,
        all_pairs.n_wins,
        all_pairs.n_images,
        all_pairs.n_wins / all_pairs.n_images as win_rate
    from all_pairs
    inner join candidates as candidates_i
        on candidates_i.target_number = all_pairs.target_number
        and candidates_i.source_index = all_pairs.source_index_i
    inner join candidates as candidates_j
        on candidates_j.target_number = all_pairs.target_number
        and candidates_j.source_index = all_pairs.source_index_j
)

select * from final;

comment on view pairwise_wins is 'One row per (target, candidate i, candidate j): images where i beats j (ties half), images compared, win rate.';
