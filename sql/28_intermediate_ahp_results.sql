-- macro: ahp_results(matrix), a table macro
-- grain: one row per (replicate, target, candidate) of the matrix named by `matrix` (ahp_matrix for the study,
--        bootstrap_matrix for every bootstrap replicate): the same AHP for both, so replicate 0 of the bootstrap
--        is the study's own result to the last bit
-- input columns: replicate, target, source_index_i, source_index_j, is_ahp_pair, win_rate, win_ratio
-- columns: replicate, target, source_index, sources, "order", kind, affinity (AHP: the principal eigenvector of the target's W', summing
--          to 1 per target over its AHP candidates; null for scratch, which is no candidate), quality (win rate
--          against gold; null if gold is not measured), gain (win rate against scratch; null if scratch is not
--          measured), n_squarings (how many squarings the eigenvector took)
-- upstream: affinity_candidates, the matrix
--
-- The eigenvector is found by repeated squaring, a power iteration that doubles its exponent each step:
-- M_{k+1} = M_k^2 / sum(M_k^2), so after k steps M is W'^(2^k) scaled, which tends to u v^T with u the principal
-- eigenvector (W' is positive, so Perron-Frobenius gives a simple dominant eigenvalue and a positive u). The row
-- sums of M are then proportional to u. It stops when u changes by less than 1e-15 between steps, or after 64
-- steps (W'^(2^64)); the error after k steps shrinks like |lambda_2 / lambda_1|^(2^k).
create or replace macro ahp_results(matrix) as table
with recursive

-- materialized: the quality and gain CTEs read it too, and every read would recompute the wins
matrix_entries as materialized (
    select replicate, target, source_index_i, source_index_j, is_ahp_pair, win_rate, win_ratio
    from query_table(matrix)
),

ratio_rows as (
    select replicate, target, source_index_i, list(win_ratio order by source_index_j) as ratio_row
    from matrix_entries
    where is_ahp_pair
    group by replicate, target, source_index_i
),

ratio_matrices as (
    select replicate, target, list(ratio_row order by source_index_i) as ratio_matrix,
        count(*)::integer as n_sources
    from ratio_rows
    group by replicate, target
),

-- one row per (replicate, target, step): the normalised power of W', its row sums, and how much they moved
squarings as (
    select
        replicate,
        target,
        n_sources,
        0 as n_squarings,
        ratio_matrix as power_matrix,
        list_transform(ratio_matrix, lambda matrix_row: list_sum(matrix_row)) as row_sums,
        1.0::double as change
    from ratio_matrices

    union all

    select
        replicate,
        target,
        n_sources,
        n_squarings + 1,
        list_transform(squared, lambda matrix_row: list_transform(matrix_row, lambda entry: entry / squared_total)),
        list_transform(squared, lambda matrix_row: list_sum(matrix_row) / squared_total),
        list_max(
            list_transform(
                squared,
                lambda matrix_row, row_number: abs(list_sum(matrix_row) / squared_total - previous_sums[row_number])
            )
        )
    from (
        select
            replicate,
            target,
            n_sources,
            n_squarings,
            list_transform(row_sums, lambda row_sum: row_sum / list_sum(row_sums)) as previous_sums,
            squared,
            list_sum(list_transform(squared, lambda matrix_row: list_sum(matrix_row))) as squared_total
        from (
            select
                replicate,
                target,
                n_sources,
                n_squarings,
                row_sums,
                list_transform(
                    power_matrix,
                    lambda matrix_row: list_transform(
                        range(1, n_sources + 1),
                        lambda column_number: list_dot_product(
                            matrix_row,
                            list_transform(power_matrix, lambda other_row: other_row[column_number])
                        )
                    )
                ) as squared
            from squarings
            where change > 1e-15 and n_squarings < 64
        ) as step_products
    ) as step_totals
),

eigenvectors as (
    select replicate, target, n_sources, n_squarings, row_sums
    from squarings
    qualify row_number() over (partition by replicate, target order by n_squarings desc) = 1
),

affinities as (
    select
        eigenvectors.replicate,
        eigenvectors.target,
        unnest(range(1, eigenvectors.n_sources + 1)) as source_index,
        unnest(eigenvectors.row_sums) / list_sum(eigenvectors.row_sums) as affinity,
        eigenvectors.n_squarings
    from eigenvectors
),

quality_wins as (
    select matrix_entries.replicate, matrix_entries.target, matrix_entries.source_index_i as source_index,
        matrix_entries.win_rate as quality
    from matrix_entries
    inner join affinity_candidates as gold
        on gold.target = matrix_entries.target and gold.source_index = matrix_entries.source_index_j
    where gold.kind = 'gold'
),

gain_wins as (
    select matrix_entries.replicate, matrix_entries.target, matrix_entries.source_index_i as source_index,
        matrix_entries.win_rate as gain
    from matrix_entries
    inner join affinity_candidates as scratch
        on scratch.target = matrix_entries.target and scratch.source_index = matrix_entries.source_index_j
    where scratch.kind = 'scratch'
),

final as (
    select
        matrices.replicate,
        affinity_candidates.target,
        affinity_candidates.source_index,
        affinity_candidates.sources,
        affinity_candidates."order",
        affinity_candidates.kind,
        affinities.affinity,
        quality_wins.quality,
        gain_wins.gain,
        affinities.n_squarings
    from (select distinct replicate, target from matrix_entries) as matrices
    inner join affinity_candidates on affinity_candidates.target = matrices.target
    left join affinities
        on affinities.replicate = matrices.replicate
        and affinities.target = affinity_candidates.target
        and affinities.source_index = affinity_candidates.source_index
    left join quality_wins
        on quality_wins.replicate = matrices.replicate
        and quality_wins.target = affinity_candidates.target
        and quality_wins.source_index = affinity_candidates.source_index
    left join gain_wins
        on gain_wins.replicate = matrices.replicate
        and gain_wins.target = affinity_candidates.target
        and gain_wins.source_index = affinity_candidates.source_index
)

select * from final;
