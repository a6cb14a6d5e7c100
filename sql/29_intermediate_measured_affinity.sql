-- view: measured_affinity
-- grain: one row per (target, candidate source set) of the workspace's own transfers
-- columns: target, sources, "order", kind, affinity (AHP: the principal eigenvector of the target's W', summing
--          to 1 per target over its AHP candidates; null for scratch, which is no candidate), quality (win rate
--          against gold; null if gold is not measured), gain (win rate against scratch; null if scratch is not
--          measured), n_squarings (how many squarings the eigenvector took)
-- upstream: ahp_results over ahp_matrix
create or replace view measured_affinity as
with

final as (
    select target, sources, "order", kind, affinity, quality, gain, n_squarings
    from ahp_results('ahp_matrix')
)

select * from final;

comment on view measured_affinity is 'One row per (target, candidate) of the workspace''s transfers: AHP affinity, Quality and Gain.';
