-- Schema version 6: which images each readout and scratch network trained and stopped early on, and how long it
-- trained, so that "no readout saw an image a task network trained on" is a query, not a promise.
create table transfer_image_sets (
    image_set varchar not null,           -- digest of the run's fit, holdout and test images
    image_id integer not null,
    role varchar not null check (role in ('fit', 'holdout')),
    primary key (image_set, image_id)
);
comment on table transfer_image_sets is 'One row per (image set, image): the images readouts of a run fit (gradient steps) or held out (early stopping).';

alter table transfers add column image_set varchar;
alter table transfers add column n_steps integer;
alter table transfers add column best_step integer;
comment on column transfers.image_set is 'The transfer_image_sets its readout or scratch network trained on; null for gold and older transfers.';
comment on column transfers.n_steps is 'Optimiser steps taken before early stopping or the step budget ended training.';
comment on column transfers.best_step is 'The step whose weights were kept: lowest loss on the held-out images (0 = the trivial predictor).';
