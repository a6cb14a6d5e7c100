-- view: active_results
-- grain: one row per (target, candidate source set) of the active origin (see active_origin)
-- columns: target, sources, "order" (integer), kind, affinity, quality, gain (doubles; null where not measured or
--          not released)
-- upstream: affinity_by_origin, active_origin
-- The one place that picks the active origin: the affinity, quality, gain and first_order_affinity marts read it.
create or replace view active_results as
with

active as (
    select origin from active_origin
),

final as (
    select
        affinity_by_origin.target,
        affinity_by_origin.sources,
        affinity_by_origin."order"::integer as "order",
        affinity_by_origin.kind,
        affinity_by_origin.affinity::double as affinity,
        affinity_by_origin.quality::double as quality,
        affinity_by_origin.gain::double as gain
    from affinity_by_origin
    inner join active on active.origin = affinity_by_origin.origin
)

select * from final;

comment on view active_results is 'One row per (target, candidate source set) of the active origin: affinity, Quality and Gain.';
