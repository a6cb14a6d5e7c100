-- view: bootstrap_affinity
-- grain: one row per (replicate, target, candidate source set): measured_affinity for every bootstrap replicate,
--        replicate 0 equal to it
-- columns: replicate, target, sources, "order", kind, affinity, quality, gain (as in measured_affinity)
-- upstream: ahp_results over bootstrap_matrix
create or replace view bootstrap_affinity as
with

final as (
    select replicate, target, sources, "order", kind, affinity, quality, gain
    from ahp_results('bootstrap_matrix')
)

select * from final;

comment on view bootstrap_affinity is 'One row per (replicate, target, candidate): AHP affinity, Quality and Gain with test buildings resampled.';
