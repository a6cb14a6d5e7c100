-- view: candidate_transfers
-- grain: one row per (target, source set, readout seed) whose losses the affinity views read: every candidate
--        of affinity_candidates with each of its readouts that is averaged
-- columns: target, source_index (1..n within the target: AHP candidates by sources, then scratch), sources,
--          "order", kind, is_ahp_candidate (false for scratch), seed_index (as stored: 0..N-1 under
--          `[transfer] seeds = N`), seed_rank (1..n_seeds: the readouts of a target's candidates that are compared
--          with one another seed by seed), n_seeds (how many readouts of each candidate are averaged), transfer_id
-- upstream: transfers
-- A target's candidates all come from its latest settings (the settings_hash of its most recently finished done
-- transfer): AHP compares sources image by image, so a readout trained on more images or epochs must not compete
-- with ones trained on fewer. A source set measured more than once under those settings and seed (a rerun, a
-- retrained encoder) counts once: its latest done transfer.
-- Every trained candidate of a target is averaged over the same number of seeds, the fewest any of them has
-- (its lowest seed indices): a mean over more readouts is closer to its expectation, and being less noisy would
-- win more of the image-by-image comparisons. Gold is one deterministic network with seed 0 only; it serves at
-- every seed rank.
-- scratch is compared with every candidate (its win rates are Gain) but is no AHP candidate: the paper's released
-- affinities never list it, and a network trained from pixels is not a representation a taxonomy could supervise.
-- It is numbered last so the AHP candidates of a target are exactly source_index 1..n.
create or replace view candidate_transfers as
with

done_transfers as (
    select transfer_id, target, sources, "order", kind, seed_index, settings_hash, finished_at,
        -- the key without its seed: what the readout read (settings, images, the encoders' weights)
        case when seed_index = 0 then transfer_key else replace(transfer_key, ':seed' || seed_index, '') end
            as readout_key
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
        done_transfers.kind, done_transfers.seed_index, done_transfers.readout_key, done_transfers.finished_at
    from done_transfers
    semi join current_settings
        on current_settings.target = done_transfers.target
        and current_settings.settings_hash = done_transfers.settings_hash
    qualify row_number() over (
        partition by done_transfers.target, done_transfers.sources, done_transfers.seed_index
        order by done_transfers.finished_at desc, done_transfers.transfer_id desc
    ) = 1
),

-- A candidate's seeds all read the same inputs: those of its most recently finished readout (an encoder
-- retrained since, and only seed 0 run again, leaves the older seeds out rather than averaged in).
current_readouts as (
    select *
    from latest
    qualify readout_key = arg_max(readout_key, (finished_at, transfer_id)) over (partition by target, sources)
),

ranked as (
    select
        *,
        row_number() over (partition by target, sources order by seed_index)::integer as seed_rank,
        count(*) over (partition by target, sources)::integer as n_stored
    from current_readouts
),

target_seeds as (
    select target, coalesce(min(n_stored) filter (where kind <> 'gold'), 1)::integer as n_seeds
    from ranked
    group by target
),

final as (
    select
        ranked.target,
        dense_rank() over (partition by ranked.target order by ranked.kind = 'scratch', ranked.sources)::integer
            as source_index,
        ranked.sources,
        ranked."order",
        ranked.kind,
        ranked.kind <> 'scratch' as is_ahp_candidate,
        ranked.seed_index,
        ranked.seed_rank,
        case when ranked.kind = 'gold' then 1 else target_seeds.n_seeds end as n_seeds,
        ranked.transfer_id
    from ranked
    inner join target_seeds on target_seeds.target = ranked.target
    where ranked.seed_rank <= case when ranked.kind = 'gold' then 1 else target_seeds.n_seeds end
)

select * from final;

comment on view candidate_transfers is 'One row per (target, source set, readout seed) the affinity views average: latest settings, the same number of seeds for every candidate.';
