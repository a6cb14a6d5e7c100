-- Schema version 2: the gold-standard networks (`tdb train`): per-epoch training history and each task's test
-- result against its trivial baseline.

create table training_epochs (
    task varchar not null,
    epoch integer not null,               -- 1-based
    train_loss double not null,           -- mean per-image loss over the epoch's training batches
    val_loss double not null,             -- mean per-image loss on the val split after the epoch
    is_best boolean not null,             -- the checkpoint kept at models/<task>.pt came from this epoch
    seconds double not null,
    primary key (task, epoch)
);
comment on table training_epochs is 'One row per (task, epoch) of gold-standard training: train and val loss, and whether the kept checkpoint came from it.';

create table gold_results (
    task varchar primary key,
    n_train_images integer not null,
    n_val_images integer not null,
    n_test_images integer not null,
    best_epoch integer not null,
    n_epochs integer not null,
    test_loss double not null,            -- mean per-image test loss of the best checkpoint
    baseline_loss double not null,        -- mean per-image test loss of the trivial predictor (train mean / frequencies)
    beats_baseline boolean not null,
    checkpoint_path varchar not null,
    settings_hash varchar not null,
    settings json not null,
    seconds_train double not null,
    trained_at timestamp not null
);
comment on table gold_results is 'One row per trained task: the gold standard''s test loss against the trivial baseline, with its settings.';
