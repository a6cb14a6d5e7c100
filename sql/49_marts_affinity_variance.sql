-- view: affinity_variance
-- grain: one row per (target, candidate source set) of the workspace's own transfers with a measured affinity
-- columns: target, sources, "order", kind, affinity (the study's), n_seeds (the target's readouts averaged per
--          source set; gold, one network, is compared with their mean as well),
--          seed_variance (the variance the readout seeds leave in the affinity: the variance over seeds of the
--          affinity measured with one seed, divided by n_seeds as the study averages them; null with one seed),
--          image_variance (the variance over the building bootstrap's replicates: what other test buildings
--          would change; null without replicates), seed_share (seed_variance / (seed_variance + image_variance):
--          how much of the uncertainty more seeds would remove, and how much only more test buildings would)
-- upstream: ahp_results over seed_matrix, bootstrap_affinity, affinity_candidates
-- The two parts are measured with the other held fixed (the seeds on the same test images; the bootstrap on
-- the seed-averaged losses), so their sum approximates the variance of the affinity when both vary.
create or replace view affinity_variance as
with

seed_spread as (
    select target, sources, var_samp(affinity) as single_seed_variance
    from ahp_results('seed_matrix')
    group by target, sources
),

image_spread as (
    select target, sources, var_samp(affinity) as image_variance
    from bootstrap_affinity
    where replicate > 0
    group by target, sources
),

target_seeds as (
    select target, max(n_seeds) as n_seeds from affinity_candidates group by target
),

point as (
    select target, sources, "order", kind, affinity
    from bootstrap_affinity
    where replicate = 0 and affinity is not null
),

final as (
    select
        point.target,
        point.sources,
        point."order"::integer as "order",
        point.kind,
        point.affinity,
        target_seeds.n_seeds,
        seed_spread.single_seed_variance / target_seeds.n_seeds as seed_variance,
        image_spread.image_variance,
        case
            when seed_spread.single_seed_variance / target_seeds.n_seeds + image_spread.image_variance > 0
                then seed_spread.single_seed_variance / target_seeds.n_seeds
                / (seed_spread.single_seed_variance / target_seeds.n_seeds + image_spread.image_variance)
        end as seed_share
    from point
    inner join target_seeds on target_seeds.target = point.target
    left join seed_spread on seed_spread.target = point.target and seed_spread.sources = point.sources
    left join image_spread on image_spread.target = point.target and image_spread.sources = point.sources
)

select * from final;

comment on view affinity_variance is 'One row per (target, source set): the affinity''s variance from readout seeds and from test-image sampling.';
