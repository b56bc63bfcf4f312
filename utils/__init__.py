"""Shared helpers of the scripts, the web page and the training, one module per job (a flat layout
for now; issue 22 groups them into sub-packages by concern).

Files and weights:
    atomic (whole files or none, folders one process at a time), checkpoint (loading and saving
    checkpoints), weights (which weights a task uses), image_io (reading and writing images).
Data:
    image_pairs (pairing by name, patch checks, crops, flips), data_check (a training set's quick
    check), degradations (the synthetic blur, rain and noise), degradations_heldout (an independent
    generator for judging), synthetic (training pairs made on the fly).
Inference:
    inference (``Restorer``: whole images, precision choice), tiling (overlapping tiles), padding
    (to a multiple of 8 and back), folder_restore (lists and folders of images), cli (the inference
    scripts' options and exit codes), allocator (glibc malloc settings), visualize (input beside
    result in one PNG).
Training:
    config (yacs defaults, training.yml, overrides), errors (``ConfigError``, without yacs),
    train_cli (train.py's command line), engine (model step and loop), schedule (the learning-rate
    curve), seeding (reproducible, resumable random state), distributed (torchrun).
Evaluation:
    metrics (PSNR and SSIM as in the paper's evaluation), evaluation (scoring restored images).
"""
