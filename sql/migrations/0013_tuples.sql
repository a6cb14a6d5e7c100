-- Schema version 13: the multi-image tasks (egomotion, fixated and nonfixated pose, point matching). Ingest reads
-- each view's camera from its point_info file into `cameras`; the tuples of views those tasks compare, with
-- their labels, are derived from the cameras into `tuples`. A tuple task's per-tuple losses are stored in
-- `losses` under its tuple_id, in the column named image_id.
alter table tasks add column n_views integer default 1;
alter table tasks alter column n_views set not null;
comment on column tasks.n_views is 'Images the task network reads at once: 1, or 2 and 3 for the siamese tasks whose items are tuples.';

create table cameras (
    data_root varchar not null,
    image_key varchar not null,           -- building/point_P_view_V, as in images
    location double[] not null,           -- camera_location, world metres
    rotation double[] not null,           -- camera_rotation_final, Blender XYZ Euler radians
    points_in_view integer[] not null     -- nonfixated_points_in_view: other points the view sees
);
comment on table cameras is 'One row per view with a camera file (point_info): the fields the multi-image tasks'' labels and tuples come from.';

create sequence tuple_id_seq start 1;
create table tuples (
    tuple_id integer primary key default nextval('tuple_id_seq'),
    tuple_key varchar not null unique,    -- task:image_key|image_key[|image_key]: stable across re-ingests
    task varchar not null,
    image_ids integer[] not null,         -- ordered: the label is a function of the order
    label double[] not null,              -- the relative poses (normalised), or [1] / [0] for a match / not
    building varchar not null,
    split varchar check (split in ('train', 'val', 'test'))
);
comment on table tuples is 'One row per tuple of views of one building a multi-image task reads (pairs, triples), with its label; its split is its building''s.';
