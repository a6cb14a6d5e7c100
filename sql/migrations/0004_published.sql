-- Schema version 4: the paper's released affinities and win rates, imported with `tdb import-published`.
-- Names are already mapped to this project's: dataset domain names, self -> gold, pixels -> scratch, sources sorted.
-- Several data sizes may be imported; at most one is active, and while one is the affinity, quality and gain
-- views serve it instead of the workspace's measured transfers (see the active_origin view).

create table published_datasets (
    data varchar primary key check (data in ('1k', '16k', 'full')),
    source_path varchar not null,         -- the taskonomy-published folder the pickles were read from
    n_transfers integer not null,
    n_targets integer not null,
    is_active boolean not null,
    imported_at timestamp not null
);
comment on table published_datasets is 'One row per imported data size of the paper''s released results; is_active marks the one the views serve.';

create table published_transfers (
    data varchar not null,
    paper_key varchar not null,           -- the released key, e.g. rgb2sfnorm__reshade__rgb2depth
    target varchar not null,
    sources varchar[] not null,           -- sorted; [gold], [scratch] or [random] for the baselines
    "order" integer not null,
    kind varchar not null check (kind in ('transfer', 'gold', 'scratch', 'random')),
    affinity double,                      -- null where the release has win rates but no affinity
    quality double,                       -- win rate against gold (wins_vs_task)
    gain double,                          -- win rate against scratch (wins_vs_pixels)
    primary key (data, paper_key)
);
comment on table published_transfers is 'One row per (data size, released transfer key): its affinity, Quality and Gain as released, names mapped.';
