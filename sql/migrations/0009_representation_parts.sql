-- Schema version 9: which Parquet parts `tdb extract` wrote for each encoder and how many rows each holds, so a
-- reader can tell a deleted or truncated part from an encoder that was never extracted.
create table representation_parts (
    encoder varchar not null,
    part varchar not null,                -- file name under representations/<encoder>/
    n_rows integer not null,
    recorded_at timestamp not null,
    primary key (encoder, part)
);
comment on table representation_parts is 'One row per Parquet part of an encoder''s extracted representations, as tdb extract left the folder.';
