-- view: bootstrap_weights
-- grain: one row per (replicate, test building drawn at least once in it); replicate 0 is the study itself
-- columns: replicate (0 to the variable bootstrap_replicates, default 200), building, weight (how many times the
--          replicate drew the building: 1 for every test building in replicate 0), scale (n / (n - 1) in replicates
--          1.., 1 in replicate 0: weight x scale makes each replicate weigh as many images as the study, which
--          smoothing needs; kept apart so that the weighted sums stay exact and independent of summation order)
-- upstream: images; the variables bootstrap_replicates and bootstrap_seed (default 0)
-- A replicate draws test buildings with replacement: views of one building share its rooms, lighting and clutter,
-- so buildings, not images, are the independent units. It draws n - 1 of the n buildings (Rao and Wu's rescaling
-- bootstrap for clustered samples, with its rescaled weights: a ratio of weighted sums does not see the scale,
-- the smoothed win rate (wins + a) / (n + 2a) does):
-- drawing n underestimates the variance by the factor (n - 1) / n, which with the demo's 18 test buildings made
-- 95% intervals cover a known win rate in about 91.5% of simulated studies, against about 93% with n - 1. A study
-- of one test building has no replicates. Draw d of replicate r is test building number (the lower 64 bits of md5('seed:r:d')) mod n, buildings numbered from 0 in name order: a
-- seeded hash instead of random(), so every query, client and machine sees the same replicates, and any language
-- can redo them. MD5, not DuckDB's hash(): hash() of the three numbers mixes too little (the weights' variance
-- came out 6% below the multinomial's), and is free to change between DuckDB versions. The lower 64 bits, an
-- integer: the whole 128-bit md5_number modulo an integer is computed in floating point, which drops the low
-- bits (every draw came out an even building).
create or replace view bootstrap_weights as
with

-- tdb sets both from tdb.toml's [analysis] on every connection; another client gets the defaults or its own
-- `set variable bootstrap_replicates = 1000;`
settings as (
    select
        coalesce(getvariable('bootstrap_replicates'), 200)::integer as replicates,
        coalesce(getvariable('bootstrap_seed'), 0)::bigint as seed
),

test_buildings as (
    select building, (row_number() over (order by building) - 1)::integer as building_number
    from (select distinct building from images where split = 'test')
),

n_test_buildings as (
    select count(*)::integer as n_buildings from test_buildings
),

replicate_numbers as (
    select unnest(range(1, settings.replicates + 1)) as replicate from settings
),

draws as (
    select
        replicate_numbers.replicate,
        (md5_number_lower(concat_ws(':', settings.seed, replicate_numbers.replicate, draw_numbers.draw))
            % n_test_buildings.n_buildings)::integer as building_number
    from replicate_numbers
    cross join settings
    cross join n_test_buildings
    cross join lateral (select unnest(range(n_test_buildings.n_buildings - 1)) as draw) as draw_numbers
),

drawn as (
    select replicate, building_number, count(*)::integer as weight
    from draws
    group by replicate, building_number
),

final as (
    select 0 as replicate, building, 1 as weight, 1.0::double as scale
    from test_buildings
    union all
    select
        drawn.replicate,
        test_buildings.building,
        drawn.weight,
        n_test_buildings.n_buildings / (n_test_buildings.n_buildings - 1) as scale
    from drawn
    inner join test_buildings on test_buildings.building_number = drawn.building_number
    cross join n_test_buildings
)

select * from final;

comment on view bootstrap_weights is 'One row per (replicate, test building drawn): how many times the building bootstrap drew it; replicate 0 is the study.';
