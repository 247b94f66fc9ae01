"""Digit Recognizer kit: a from-scratch NumPy neural network for Kaggle's MNIST-as-CSV.

Modules, top-down:
    config    - the one Config dataclass and the named presets
    data      - loading train.csv / test.csv, their checks, the binary cache, the split
    augment   - on-the-fly image augmentation (shifts, rotations, scaling)
    layers    - Dense, ReLU, Dropout, BatchNorm, Conv2D, MaxPool2D: forward/backward
    losses    - softmax fused with cross-entropy
    optim     - optimisers and learning-rate schedules (registries)
    network   - a stack of layers: build from a config, predict, save, load
    train     - the training loop: epochs, best epoch, early stopping, runs on disk
    submit    - predicting test.csv and writing a checked submission.csv
    kaggle_io - the boundary to the official Kaggle client (download, upload)
    cli       - the `kit` command line
"""

__version__ = "0.1.0"
