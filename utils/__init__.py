"""Shared helpers of the scripts, the web page and the training, grouped by concern.

Packages, in the order their imports may point (a package imports only from those before it):

    files       reading and writing: image_io (images with their bit depth), image_header (size,
                channels and EXIF orientation from the header alone), atomic (whole files or
                none, folders one process at a time), checkpoint (loading and saving
                checkpoints), weights (which weights a task uses)
    data        training data: image_pairs (pairing by name, patch checks, crops, flips),
                data_check (a training set's quick check), degradations with blur, rain, noise
                and image_ops (the synthetic degradations), degradations_heldout (an independent
                generator for judging), synthetic (training pairs made on the fly), photos
                (splitting, tiling and filtering the clean photos they are made from)
    evaluation  scores and pictures: metrics (PSNR and SSIM as in the paper's evaluation),
                tensor_psnr (per-image PSNR of tensors, for validation), scoring (scoring
                folders of restored images), visualize (input beside result in one PNG)
    inference   restoring images: restorer (``Restorer`` and the precision choice), tiling
                (overlapping tiles), folder_restore (lists and folders of images), loading (the
                model a run restores with), cli (the inference command line: options, output
                plan, exit codes), uploads (one uploaded photo restored for the web page)
    training    training runs: config (yacs defaults, training.yml, overrides), trainer (the
                model step, validation, checkpoints), loop (the epochs, logging, resuming),
                datasets (datasets and loaders of a config), schedule (the learning-rate
                curve), seeding (reproducible, resumable random state), distributed (torchrun),
                cli (train.py's command line)

So files <- data <- evaluation <- inference <- training: data reads files, evaluation pairs and
reads them, inference may use neither training nor evaluation's callers, and training uses all
(validation restores with the inference Restorer and scores with evaluation). A package never
imports from one later in that order (tests/test_layout.py parses every module's imports).

Leaf modules at the root, importable by every package and importing none of them:
    padding (to a multiple of 8 and back), allocator (glibc malloc settings), device (which
    device, what the CPU computes natively), errors (``ConfigError``, without yacs, so that
    losses.py can raise it), tasks (task names: ``canonical_task``, ``require_canonical``).
"""
