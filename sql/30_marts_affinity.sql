-- view: affinity
-- grain: one row per (target, candidate source set) of the active origin (see active_origin), gold, scratch and
--        random included where measured
-- columns: target, sources (sorted; [gold], [scratch], [random] for the baselines), "order", affinity (sums to 1
--          per target)
-- upstream: affinity_by_origin, active_origin
create or replace view affinity as
with

active as (
    select origin from active_origin
),

final as (
    select
        affinity_by_origin.target,
        affinity_by_origin.sources,
        affinity_by_origin."order"::integer as "order",
        affinity_by_origin.affinity::double as affinity
    from affinity_by_origin
    inner join active on active.origin = affinity_by_origin.origin
    where affinity_by_origin.affinity is not null
)

select * from final;

comment on view affinity is 'One row per (target, candidate source set): the AHP affinity (sums to 1 per target) of the active origin.';
