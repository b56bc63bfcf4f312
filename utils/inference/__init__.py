"""Restoring images with a trained model: options (``InferenceOptions``: the weights, device,
precision and tiling of a run, checked once when built), restorer (``Restorer``: padding, precision, tiles,
and the precision choice), tiling (overlapping tiles and their memory estimate), folder_restore
(lists and folders of images, read ahead of the model), loading (the model and Restorer a run
uses, for the scripts and the web page alike), cli (the inference command line shared by
demo.py and the test scripts: options, output plan, exit codes), uploads (one uploaded photo
restored for the web page, app.py: the model per task, the upload's checks, the result file),
chain (several tasks on one image in one run: --task Denoising,Deblurring).

Imports utils.files, utils.data, utils.evaluation and the root leaf modules, never training."""
