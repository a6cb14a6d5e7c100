-- view: quality
-- grain: one row per (target, candidate source set) of the active origin whose win rate against gold is known
-- columns: target, sources, "order", quality (win rate against the gold standard; gold itself scores 0.5)
-- upstream: affinity_by_origin, active_origin
create or replace view quality as
with

active as (
    select origin from active_origin
),

final as (
    select
        affinity_by_origin.target,
        affinity_by_origin.sources,
        affinity_by_origin."order"::integer as "order",
        affinity_by_origin.quality::double as quality
    from affinity_by_origin
    inner join active on active.origin = affinity_by_origin.origin
    where affinity_by_origin.quality is not null
)

select * from final;

comment on view quality is 'One row per (target, candidate source set): Quality, the win rate against gold, of the active origin.';
