-- view: affinity_ci
-- grain: one row per (target, candidate source set) of the workspace's own transfers with a measured affinity
-- columns: target, sources, "order", kind, affinity (the study's), ci_low, ci_high (its building-bootstrap interval at
--          the level of the variable bootstrap_level, default 0.95), replicates (how many replicates measured it)
-- upstream: bootstrap_intervals
create or replace view affinity_ci as
with

final as (
    select target, sources, "order"::integer as "order", kind, value as affinity, ci_low, ci_high, replicates
    from bootstrap_intervals
    where statistic = 'affinity'
)

select * from final;

comment on view affinity_ci is 'One row per (target, candidate source set): affinity with its building-bootstrap confidence interval.';
