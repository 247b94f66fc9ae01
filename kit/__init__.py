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
    archive   - checking the competition's archive, installing its CSVs into data/ (no network)
    kaggle_auth   - which Kaggle credentials the client will use, found before it is loaded
    kaggle_client - the session with the official Kaggle client: sign-in, timeouts, calls, error lines
    kaggle_io - `kit data` (download, install) and `kit upload` (submit, score, history.csv)
    cli       - the `kit` command line
"""

__version__ = "0.1.0"
