-- view: missing_files
-- grain: one row per (image, domain) whose file is missing from an image that the dataset otherwise has
-- columns: image_id, image_key, building, domain
-- upstream: images, datasets
create or replace view missing_files as
with

image_files as (
    unpivot images
    on columns('_path$')
    into name path_column value file_path
),

dataset_domains as (
    select distinct unnest(domains) as domain from datasets
),

present as (
    select image_id, replace(path_column, '_path', '') as domain
    from image_files
),

expected as (
    select images.image_id, images.image_key, images.building, dataset_domains.domain
    from images
    cross join dataset_domains
),

final as (
    select expected.image_id, expected.image_key, expected.building, expected.domain
    from expected
    anti join present
        on present.image_id = expected.image_id and present.domain = expected.domain
)

select * from final;

comment on view missing_files is 'One row per (image, domain) whose file is missing although the dataset has that domain.';
