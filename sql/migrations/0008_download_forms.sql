-- Schema version 8: the legacy layout (the sample building), the domains a download holds that tdb skips, and
-- the legacy per-point nonfixated files.

-- DuckDB cannot change a check constraint in place: the table is rebuilt, its rows copied.
create table datasets_v8 (
    data_root varchar primary key,
    layout varchar not null check (layout in ('taskonomy', 'omnidata', 'legacy')),
    split_source varchar not null,        -- a split CSV path and set, or the deterministic split by building
    domains varchar[] not null,
    n_images integer not null,
    ingested_at timestamp not null,
    unused_domains varchar[] not null default []  -- known domains tdb does not use, skipped (rgb_large, ...)
);
insert into datasets_v8 (data_root, layout, split_source, domains, n_images, ingested_at)
select data_root, layout, split_source, domains, n_images, ingested_at
from datasets;
drop table datasets;
alter table datasets_v8 rename to datasets;
comment on table datasets is 'One row per ingested data root: its layout, split source, domains, skipped unused domains and image count.';

create table nonfixated_views (
    data_root varchar not null,
    building varchar not null,
    point integer not null,               -- the point seen
    image_key varchar not null,           -- building/point_P_view_V of the image that sees it
    camera_uuid varchar not null,
    pixel_x integer not null,             -- where the point is in that image (nonfixated_pixel_x, _y)
    pixel_y integer not null
);
comment on table nonfixated_views is 'One row per (point, image that sees it), from the legacy per-point nonfixated files.';
