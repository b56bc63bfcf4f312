"""Scores and pictures: metrics (PSNR and SSIM with the semantics of the paper's MATLAB and
Python evaluation, on numpy arrays), tensor_psnr (per-image PSNR of tensor batches, as
validation measures it), scoring (scoring folders of restored images against targets),
visualize (inputs beside results in one PNG, ``python -m utils.evaluation.visualize``).

Imports utils.files, utils.data and the root leaf modules only."""
