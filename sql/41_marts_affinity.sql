-- view: affinity
-- grain: one row per (target, candidate source set) of the active origin (see active_origin), gold, scratch and
--        random included where measured
-- columns: target, sources (sorted; [gold], [scratch], [random] for the baselines), "order", affinity (sums to 1
--          per target)
-- upstream: active_results
create or replace view affinity as
with

final as (
    select target, sources, "order", affinity
    from active_results
    where affinity is not null
)

select * from final;

comment on view affinity is 'One row per (target, candidate source set): the AHP affinity (sums to 1 per target) of the active origin.';
