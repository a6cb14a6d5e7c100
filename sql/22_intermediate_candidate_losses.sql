-- view: candidate_losses
-- grain: one row per (target, candidate, seed rank, test image) that has a loss from every readout it averages
-- columns: target, source_index, seed_rank (0: the mean over the candidate's readout seeds, what the study
--          compares; 1..n_seeds: one seed's readout alone, only for targets with several seeds, gold's single
--          loss at every rank), image_id, loss
-- upstream: candidate_transfers, losses
-- Averaging the losses of N readouts per image, rather than comparing each seed's readout on its own, estimates
-- what a readout of that source set does on the image with the seed's chance taken out; the single seeds give
-- how much that chance moves the affinities (affinity_variance). The mean sums in seed order, so it is the
-- same to the last bit on every run: a comparison of two losses can turn on it.
create or replace view candidate_losses as
with

-- one readout per candidate (every candidate of a single-seed study, and gold): no aggregation over the losses
single_seed as (
    select candidate_transfers.target, candidate_transfers.source_index, 0 as seed_rank, losses.image_id,
        losses.loss
    from losses
    inner join candidate_transfers on candidate_transfers.transfer_id = losses.transfer_id
    where candidate_transfers.n_seeds = 1
),

seed_mean as (
    select
        candidate_transfers.target,
        candidate_transfers.source_index,
        0 as seed_rank,
        losses.image_id,
        list_sum(list(losses.loss order by candidate_transfers.seed_rank)) / count(*) as loss
    from losses
    inner join candidate_transfers on candidate_transfers.transfer_id = losses.transfer_id
    where candidate_transfers.n_seeds > 1
    group by candidate_transfers.target, candidate_transfers.source_index, losses.image_id
    having count(*) = any_value(candidate_transfers.n_seeds)
),

single_seeds as (
    select candidate_transfers.target, candidate_transfers.source_index, seed_ranks.seed_rank, losses.image_id,
        losses.loss
    from losses
    inner join candidate_transfers on candidate_transfers.transfer_id = losses.transfer_id
    inner join (select distinct target, seed_rank from candidate_transfers where n_seeds > 1) as seed_ranks
        on seed_ranks.target = candidate_transfers.target
        and (candidate_transfers.kind = 'gold' or seed_ranks.seed_rank = candidate_transfers.seed_rank)
),

final as (
    select * from single_seed
    union all
    select * from seed_mean
    union all
    select * from single_seeds
)

select * from final;

comment on view candidate_losses is 'One row per (target, candidate, seed rank, test image): the loss (rank 0: the mean over readout seeds; 1..n: one seed).';
