-- view: transfer_train_images
-- grain: one row per (transfer, image) that a readout or scratch network trained on (role 'fit': gradient steps)
--        or stopped early on (role 'holdout'); gold networks trained on the train split and have none here
-- columns: transfer_id, target, sources, kind, image_id, split (the image's split now), role
-- upstream: transfers, transfer_image_sets, images
create or replace view transfer_train_images as
with

trained as (
    select transfer_id, target, sources, kind, image_set
    from transfers
    where image_set is not null and kind in ('transfer', 'scratch', 'random')
),

final as (
    select trained.transfer_id, trained.target, trained.sources, trained.kind, sets.image_id, images.split, sets.role
    from trained
    inner join transfer_image_sets as sets on sets.image_set = trained.image_set
    left join images on images.image_id = sets.image_id
)

select * from final;

comment on view transfer_train_images is 'One row per (transfer, image) a readout or scratch network fit or stopped early on, with the image''s split.';
