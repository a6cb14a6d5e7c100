-- Schema version 12: cheap transferability estimates (`tdb estimate`), to compare with measured affinities.
create table estimates (
    method varchar not null check (method in ('logme', 'ridge', 'cka', 'rsa')),
    target varchar not null,
    sources varchar[] not null,
    score double not null,
    n_images integer not null,
    seconds double not null,
    estimated_at timestamp not null
);
comment on table estimates is 'One row per (method, target, source set): a transferability estimate from representations and labels alone.';
