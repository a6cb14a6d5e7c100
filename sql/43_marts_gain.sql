-- view: gain
-- grain: one row per (target, candidate source set) of the active origin whose win rate against scratch is known
-- columns: target, sources, "order", gain (win rate against the scratch network trained on the same small data;
--          scratch itself scores 0.5)
-- upstream: active_results
create or replace view gain as
with

final as (
    select target, sources, "order", gain
    from active_results
    where gain is not null
)

select * from final;

comment on view gain is 'One row per (target, candidate source set): Gain, the win rate against scratch, of the active origin.';
