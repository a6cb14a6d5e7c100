-- view: gain
-- grain: one row per (target, candidate source set) of the active origin whose win rate against scratch is known
-- columns: target, sources, "order", gain (win rate against the scratch network trained on the same small data;
--          scratch itself scores 0.5)
-- upstream: affinity_by_origin, active_origin
create or replace view gain as
with

active as (
    select origin from active_origin
),

final as (
    select
        affinity_by_origin.target,
        affinity_by_origin.sources,
        affinity_by_origin."order"::integer as "order",
        affinity_by_origin.gain::double as gain
    from affinity_by_origin
    inner join active on active.origin = affinity_by_origin.origin
    where affinity_by_origin.gain is not null
)

select * from final;

comment on view gain is 'One row per (target, candidate source set): Gain, the win rate against scratch, of the active origin.';
