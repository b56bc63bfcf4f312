"""Files on disk: image_io (reading and writing images, bit depth, EXIF orientation applied),
image_header (what a file's header says before any pixel is decoded), atomic (a file is whole
or absent; a folder used by one process at a time), checkpoint (reading, checking and saving
checkpoints), weights (which weights file a task uses: official, bundled or a path).

The first package of utils: it imports only the root leaf modules and the top-level MPRNet."""
