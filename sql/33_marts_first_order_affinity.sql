-- view: first_order_affinity
-- grain: one row per (source, target) first-order candidate of the active origin: the source x target affinity
--        matrix in long form, the baselines gold, scratch and random included as sources
-- columns: source, target, affinity (after AHP; null where only win rates are known), quality (win rate against
--          gold: the matrix before AHP), gain (win rate against scratch)
-- upstream: affinity_by_origin, active_origin
create or replace view first_order_affinity as
with

active as (
    select origin from active_origin
),

first_order as (
    select affinity_by_origin.*
    from affinity_by_origin
    inner join active on active.origin = affinity_by_origin.origin
    where len(affinity_by_origin.sources) = 1
),

final as (
    select
        sources[1] as source,
        target,
        affinity::double as affinity,
        quality::double as quality,
        gain::double as gain
    from first_order
)

select * from final;

comment on view first_order_affinity is 'One row per (source, target) first-order candidate of the active origin: the affinity matrix in long form.';
