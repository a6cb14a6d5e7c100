-- view: affinity_candidates
-- grain: one row per (target, source set) with a done transfer: every candidate compared image by image for
--        that target, the gold, scratch and random baselines included where measured
-- columns: target, source_index (1..n within the target: AHP candidates by sources, then scratch), sources,
--          "order", kind, is_ahp_candidate (false for scratch), transfer_id
-- upstream: transfers
-- A target's candidates all come from its latest settings (the settings_hash of its most recently finished done
-- transfer): AHP compares sources image by image, so a readout trained on more images or epochs must not compete
-- with ones trained on fewer. A source set measured more than once under those settings (a rerun, a retrained
-- encoder) counts once: its latest done transfer.
-- scratch is compared with every candidate (its win rates are Gain) but is no AHP candidate: the paper's released
-- affinities never list it, and a network trained from pixels is not a representation a taxonomy could supervise.
-- It is numbered last so the AHP candidates of a target are exactly source_index 1..n.
create or replace view affinity_candidates as
with

done_transfers as (
    select transfer_id, target, sources, "order", kind, settings_hash, finished_at
    from transfers
    where status = 'done'
),

current_settings as (
    select target, arg_max(settings_hash, (finished_at, transfer_id)) as settings_hash
    from done_transfers
    group by target
),

latest as (
    select done_transfers.transfer_id, done_transfers.target, done_transfers.sources, done_transfers."order",
        done_transfers.kind
    from done_transfers
    semi join current_settings
        on current_settings.target = done_transfers.target
        and current_settings.settings_hash = done_transfers.settings_hash
    qualify row_number() over (
        partition by done_transfers.target, done_transfers.sources
        order by done_transfers.finished_at desc, done_transfers.transfer_id desc
    ) = 1
),

final as (
    select
        target,
        row_number() over (partition by target order by kind = 'scratch', sources)::integer as source_index,
        sources,
        "order",
        kind,
        kind <> 'scratch' as is_ahp_candidate,
        transfer_id
    from latest
)

select * from final;

comment on view affinity_candidates is 'One row per (target, source set) with a done transfer (latest if repeated): the candidates AHP ranks.';
