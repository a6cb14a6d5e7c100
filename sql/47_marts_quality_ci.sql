-- view: quality_ci
-- grain: one row per (target, candidate source set) of the workspace's own transfers with a measured quality
-- columns: target, sources, "order", kind, quality (the study's), ci_low, ci_high (its building-bootstrap interval at
--          the level of the variable bootstrap_level, default 0.95), replicates (how many replicates measured it)
-- upstream: bootstrap_intervals
create or replace view quality_ci as
with

final as (
    select target, sources, "order"::integer as "order", kind, value as quality, ci_low, ci_high, replicates
    from bootstrap_intervals
    where statistic = 'quality'
)

select * from final;

comment on view quality_ci is 'One row per (target, candidate source set): quality with its building-bootstrap confidence interval.';
