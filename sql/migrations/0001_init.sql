-- Schema version 1: the catalog (tasks, images, encoders), the transfer store (transfers, losses) and provenance (runs).
-- Table and column names are a public contract: the analysis views, later migrations and users' own SQL rely on them.

create table if not exists schema_meta (
    key varchar primary key,
    value varchar not null
);
comment on table schema_meta is 'Schema version and the digest of the installed views; owned by taskonomy-db.';

create table tasks (
    task varchar primary key,
    task_group varchar not null,          -- 3D, 2D, geometric, semantic, or other
    input_kind varchar not null,          -- rgb, grey, noisy_rgb, masked_rgb, tiles, ...
    output_kind varchar not null,         -- dense, classification, vector, ...
    loss varchar not null,
    is_source boolean not null default true,
    is_target boolean not null default true,
    description varchar not null default ''
);
comment on table tasks is 'One row per registered task: its group, network input, output kind, loss and roles.';

create sequence image_id_seq start 1;
create table images (
    image_id integer primary key default nextval('image_id_seq'),
    image_key varchar not null unique,    -- building/point_P_view_V: stable across re-ingests
    building varchar not null,
    point integer not null,
    "view" integer not null,
    split varchar check (split in ('train', 'val', 'test')),
    rgb_path varchar,
    depth_zbuffer_path varchar,
    depth_euclidean_path varchar,
    normal_path varchar,
    reshading_path varchar,
    principal_curvature_path varchar,
    edge_texture_path varchar,
    edge_occlusion_path varchar,
    keypoints2d_path varchar,
    keypoints3d_path varchar,
    segment_semantic_path varchar,
    segment_unsup2d_path varchar,
    segment_unsup25d_path varchar,
    class_object_path varchar,
    class_scene_path varchar,
    points_path varchar,
    nonfixated_matches_path varchar,
    mask_valid_path varchar
);
comment on table images is 'One row per (building, point, view): its split and one file path per domain (null = missing).';

create table datasets (
    data_root varchar primary key,
    layout varchar not null check (layout in ('taskonomy', 'omnidata')),
    split_source varchar not null,        -- a split CSV path and set, or the deterministic split by building
    domains varchar[] not null,
    n_images integer not null,
    ingested_at timestamp not null
);
comment on table datasets is 'One row per ingested data root: its layout, split source, domains and image count.';

create table ingest_problems (
    data_root varchar not null,
    path varchar not null,
    problem varchar not null
);
comment on table ingest_problems is 'Files skipped by the latest ingest of each root (with --skip-bad): one row per file and problem.';

create table encoders (
    encoder varchar primary key,          -- a task name, random, or a user-registered name
    kind varchar not null check (kind in ('task', 'random', 'user')),
    task varchar,
    onnx_path varchar not null,
    sha256 varchar not null,
    input_name varchar not null,
    output_name varchar not null,
    input_size integer not null,
    preprocessing varchar not null,
    representation_shape integer[] not null,
    parity_max_abs_diff double,
    registered_at timestamp not null
);
comment on table encoders is 'One row per ONNX encoder usable as a transfer source, with its file hash and input spec.';

create sequence transfer_id_seq start 1;
create table transfers (
    transfer_id integer primary key default nextval('transfer_id_seq'),
    transfer_key varchar not null unique, -- kind:target:sources joined by '+':n_train_images:settings_hash
    target varchar not null,
    sources varchar[] not null,           -- sorted; [gold], [scratch] or [random] for the baselines
    "order" integer not null,
    kind varchar not null check (kind in ('transfer', 'gold', 'scratch', 'random')),
    n_train_images integer not null,
    status varchar not null check (status in ('done', 'failed')),
    failure_reason varchar,
    seed integer not null,
    settings_hash varchar not null,
    settings json not null,
    seconds_train double,
    seconds_eval double,
    started_at timestamp not null,
    finished_at timestamp not null
);
comment on table transfers is 'One row per finished readout (source set -> target) or baseline, done or failed, with provenance.';

create table losses (
    transfer_id integer not null,
    image_id integer not null,
    loss double not null
);
comment on table losses is 'One row per (transfer, test image): the per-image test loss every later number is built from.';

create sequence run_id_seq start 1;
create table runs (
    run_id integer primary key default nextval('run_id_seq'),
    command varchar not null,
    version varchar not null,
    git_commit varchar not null,
    settings json not null,
    started_at timestamp not null,
    finished_at timestamp,
    status varchar not null check (status in ('running', 'done', 'failed', 'interrupted'))
);
comment on table runs is 'Provenance: one row per command that changed the workspace, with version, commit and settings.';
