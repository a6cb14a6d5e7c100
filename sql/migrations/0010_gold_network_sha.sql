-- Schema version 10: the weights each gold result was measured on. A training killed between putting its new
-- weights in place and committing their result left an older result beside newer weights; a result whose
-- weights differ from the checkpoint's is not reused.
alter table gold_results add column network_sha256 varchar;
comment on column gold_results.network_sha256 is 'network_sha256 of the checkpoint the result was measured on (null: stored before schema 10).';
