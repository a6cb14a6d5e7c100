-- Schema version 11: readout seeds. `[transfer] seeds = N` trains N readouts per source set, each its own
-- transfers row; seed_index 0 is the readout a single-seed run trains (same key, same seed as before), so the
-- transfers stored before this version are seed 0 and stay valid.
alter table transfers add column seed_index integer default 0;
alter table transfers alter column seed_index set not null;
comment on column transfers.seed_index is 'Which of the source set''s readouts this is: 0..N-1 under [transfer] seeds = N (0 for gold, one deterministic network).';
