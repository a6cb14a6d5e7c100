-- view: estimator_agreement
-- grain: one row per (method, target) with estimates and measured first-order affinities of the same sources
-- columns: method, target, spearman (Spearman's rank correlation between the method's scores and the measured
--          affinities over the target's sources, its own encoder left out: which source to pick is the question
--          an estimator answers, and the own encoder is no candidate for a new task), spearman_with_own (the same
--          with the own encoder in), n_sources (sources compared, own encoder left out)
-- upstream: estimates, measured_affinity
-- Ranks of ties are averaged, as Spearman's coefficient is defined; a target with fewer than 3 sources has none.
create or replace view estimator_agreement as
with

measured as (
    select target, sources[1] as source, affinity
    from measured_affinity
    where kind = 'transfer' and "order" = 1 and affinity is not null
),

paired as (
    select estimates.method, estimates.target, measured.source, estimates.score, measured.affinity,
        measured.source = estimates.target as is_own
    from estimates
    inner join measured on measured.target = estimates.target and measured.source = estimates.sources[1]
    where len(estimates.sources) = 1
),

-- each pair ranked twice: among the target's other sources (own = false only) and among all
ranked as (
    select
        with_own,
        method,
        target,
        rank() over (partition by with_own, method, target order by score)
            + (count(*) over (partition by with_own, method, target, score) - 1) / 2.0 as score_rank,
        rank() over (partition by with_own, method, target order by affinity)
            + (count(*) over (partition by with_own, method, target, affinity) - 1) / 2.0 as affinity_rank
    from (
        select true as with_own, * from paired
        union all
        select false as with_own, * from paired where not is_own
    )
),

correlations as (
    select with_own, method, target, corr(score_rank, affinity_rank) as spearman, count(*) as n_sources
    from ranked
    group by with_own, method, target
    having count(*) >= 3
),

final as (
    select
        without_own.method,
        without_own.target,
        without_own.spearman,
        with_own.spearman as spearman_with_own,
        without_own.n_sources::integer as n_sources
    from correlations as without_own
    left join correlations as with_own
        on with_own.with_own and with_own.method = without_own.method and with_own.target = without_own.target
    where not without_own.with_own
)

select * from final;

comment on view estimator_agreement is 'One row per (method, target): Spearman between estimates and measured first-order affinities.';
