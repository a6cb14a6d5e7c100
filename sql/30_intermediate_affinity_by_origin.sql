-- view: affinity_by_origin
-- grain: one row per (origin, target, candidate source set)
-- columns: origin ('measured' for this workspace's transfers, 'published_1k' / 'published_16k' / 'published_full'
--          for imported releases), target, sources, "order", kind, affinity, quality, gain (null where not
--          measured or not released)
-- upstream: measured_affinity, published_transfers
create or replace view affinity_by_origin as
with

measured as (
    select 'measured' as origin, target, sources, "order", kind, affinity, quality, gain
    from measured_affinity
),

published as (
    select 'published_' || data as origin, target, sources, "order", kind, affinity, quality, gain
    from published_transfers
),

final as (
    select * from measured
    union all
    select * from published
)

select * from final;

comment on view affinity_by_origin is 'One row per (origin, target, candidate): measured AHP results and every imported published release.';
