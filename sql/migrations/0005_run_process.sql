-- Schema version 5: which process ran each command, so a later command can tell a run that was killed (SIGKILL,
-- a lost machine: no chance to record it) from one that is still going, and mark it interrupted.
alter table runs add column pid integer;
alter table runs add column host varchar;
comment on column runs.pid is 'Process id of the command; with host, how a later command tells a killed run from a live one.';
comment on column runs.host is 'Host name of the machine the command ran on.';
