-- view: affinity_candidates
-- grain: one row per (target, source set) with a done transfer: every candidate AHP ranks for that target,
--        the gold, scratch and random baselines included where measured
-- columns: target, source_index (1..n within the target, by sources), sources, "order", kind, transfer_id
-- upstream: transfers
-- A source set measured more than once (other settings, a rerun) counts once: its latest done transfer.
create or replace view affinity_candidates as
with

done_transfers as (
    select transfer_id, target, sources, "order", kind, finished_at
    from transfers
    where status = 'done'
),

latest as (
    select transfer_id, target, sources, "order", kind
    from done_transfers
    qualify row_number() over (partition by target, sources order by finished_at desc, transfer_id desc) = 1
),

final as (
    select
        target,
        row_number() over (partition by target order by sources)::integer as source_index,
        sources,
        "order",
        kind,
        transfer_id
    from latest
)

select * from final;

comment on view affinity_candidates is 'One row per (target, source set) with a done transfer (latest if repeated): the candidates AHP ranks.';
