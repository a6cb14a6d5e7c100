-- view: active_origin
-- grain: exactly one row
-- columns: origin (the one the affinity, quality, gain and first_order_affinity views serve: the imported
--          release marked active, else 'measured')
-- upstream: published_datasets
-- One origin at a time: AHP affinities sum to 1 over one set of candidates, so mixing a release with measured
-- transfers would break every target's normalisation. `tdb import-published` makes the release it loads active.
create or replace view active_origin as
with

active_release as (
    select 'published_' || data as origin from published_datasets where is_active
),

final as (
    select coalesce((select min(origin) from active_release), 'measured') as origin
)

select * from final;

comment on view active_origin is 'The one origin the affinity, quality and gain views serve: the active imported release, else measured.';
