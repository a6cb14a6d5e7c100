-- view: first_order_affinity
-- grain: one row per (source, target) first-order candidate of the active origin: the source x target affinity
--        matrix in long form, the baselines gold, scratch and random included as sources
-- columns: source, target, affinity (after AHP; null where only win rates are known), quality (win rate against
--          gold: the matrix before AHP), gain (win rate against scratch)
-- upstream: active_results
create or replace view first_order_affinity as
with

final as (
    select sources[1] as source, target, affinity, quality, gain
    from active_results
    where len(sources) = 1
)

select * from final;

comment on view first_order_affinity is 'One row per (source, target) first-order candidate of the active origin: the affinity matrix in long form.';
