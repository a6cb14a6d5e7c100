-- view: quality
-- grain: one row per (target, candidate source set) of the active origin whose win rate against gold is known
-- columns: target, sources, "order", quality (win rate against the gold standard; gold itself scores 0.5)
-- upstream: active_results
create or replace view quality as
with

final as (
    select target, sources, "order", quality
    from active_results
    where quality is not null
)

select * from final;

comment on view quality is 'One row per (target, candidate source set): Quality, the win rate against gold, of the active origin.';
