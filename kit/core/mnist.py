"""The shape of the competition's data, shared by every part of the kit: 28x28 grey images
stored as rows of 784 pixels, and 10 classes (the digits 0..9)."""

IMAGE_SIDE = 28
N_PIXELS = IMAGE_SIDE * IMAGE_SIDE
N_CLASSES = 10
