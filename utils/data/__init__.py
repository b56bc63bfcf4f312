"""Training data: image_pairs (pairing by name, patch checks, crops, flips), data_check (a
training set's quick check from headers), degradations (the synthetic degradations' entry point,
``degrade``) with its parts blur (camera-shake kernels), rain (streaks) and noise (camera
noise) and what those share, image_ops (the input check, parameter draws, JPEG round trip),
degradations_heldout (an independent generator for judging), synthetic (training pairs
made on the fly from clean photos), photos (the clean photos' splits, tiles and filters, for
scripts/prepare_photos.py).

Imports utils.files and the root leaf modules only."""
