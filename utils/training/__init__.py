"""Training runs: config (yacs defaults, training.yml and command-line overrides), trainer
(``Trainer``: one optimizer step, validation, checkpoints), loop (``fit``: the epochs, logs,
saving and resuming), datasets (the datasets and loaders a config names), schedule (the
learning-rate curve), ema (the weight average of OPTIM.EMA), widen (a wider model started from a
narrower one's weights, TRAINING.INIT_WIDEN), seeding (reproducible, resumable random state),
distributed (torchrun), cli (train.py's command line and exit codes).

The last package of utils: it may import every other one."""
