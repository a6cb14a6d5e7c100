-- view: bootstrap_intervals
-- grain: one row per (target, candidate source set, statistic) of the workspace's own transfers, for the
--        statistics affinity, quality and gain where measured
-- columns: target, sources, "order", kind, statistic, value (the study's: replicate 0), ci_low, ci_high (the
--          percentile interval at the variable bootstrap_level, default 0.95, over replicates 1.., interpolated
--          linearly between order statistics as numpy's default, widened to hold value where a skewed distribution
--          leaves it outside; null when no replicate measured it), replicates (how many replicates measured the
--          statistic: those that drew a building with the target's images)
-- upstream: bootstrap_affinity
create or replace macro percentile_of_sorted(sorted_values, fraction) as (
    sorted_values[floor((len(sorted_values) - 1) * fraction)::integer + 1]
    + ((len(sorted_values) - 1) * fraction - floor((len(sorted_values) - 1) * fraction))
    * (sorted_values[least(floor((len(sorted_values) - 1) * fraction)::integer + 2, len(sorted_values))]
       - sorted_values[floor((len(sorted_values) - 1) * fraction)::integer + 1])
);

create or replace view bootstrap_intervals as
with

settings as (
    select coalesce(getvariable('bootstrap_level'), 0.95)::double as level
),

statistics as (
    unpivot bootstrap_affinity on affinity, quality, gain into name statistic value value
),

point as (
    select target, sources, "order", kind, statistic, value from statistics where replicate = 0
),

replicated as (
    select target, sources, statistic, list_sort(list(value)) as sorted_values
    from statistics
    where replicate > 0
    group by target, sources, statistic
),

final as (
    select
        point.target,
        point.sources,
        point."order",
        point.kind,
        point.statistic,
        point.value,
        -- no replicate measured it (bootstrap off, one test building): no interval, not one of zero width
        case when replicated.sorted_values is not null then
            least(percentile_of_sorted(replicated.sorted_values, (1 - settings.level) / 2), point.value)
        end as ci_low,
        case when replicated.sorted_values is not null then
            greatest(percentile_of_sorted(replicated.sorted_values, (1 + settings.level) / 2), point.value)
        end as ci_high,
        coalesce(len(replicated.sorted_values), 0) as replicates
    from point
    cross join settings
    left join replicated
        on replicated.target = point.target
        and replicated.sources = point.sources
        and replicated.statistic = point.statistic
)

select * from final;

comment on view bootstrap_intervals is 'One row per (target, candidate, statistic): the study''s value and its building-bootstrap percentile interval.';
