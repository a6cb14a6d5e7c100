-- view: affinity_candidates
-- grain: one row per (target, source set) with a done transfer: every candidate compared image by image for
--        that target, the gold, scratch and random baselines included where measured
-- columns: target, source_index (1..n within the target: AHP candidates by sources, then scratch), sources,
--          "order", kind, is_ahp_candidate (false for scratch), n_seeds (readouts averaged: 1 for gold),
--          transfer_ids (those readouts' transfers, by seed)
-- upstream: candidate_transfers (which says which transfers count, and why)
create or replace view affinity_candidates as
with

final as (
    select
        target,
        source_index,
        any_value(sources) as sources,
        any_value("order") as "order",
        any_value(kind) as kind,
        any_value(is_ahp_candidate) as is_ahp_candidate,
        count(*)::integer as n_seeds,
        list(transfer_id order by seed_rank) as transfer_ids
    from candidate_transfers
    group by target, source_index
)

select * from final;

comment on view affinity_candidates is 'One row per (target, source set) with a done transfer (latest if repeated): the candidates AHP ranks.';
