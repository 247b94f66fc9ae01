"""The competition's files and images: reading, checking, splitting, augmenting.

    load.py        train.csv / test.csv read and checked (one line per problem), the binary cache
    split.py       the stratified train/validation split, pixels as float32
    augment.py     random shifts, rotations, zoom and warps on the fly; TTA views
    preprocess.py  any picture of a digit -> the 28x28 image MNIST would have made of it
    submission.py  Kaggle's submission format: read, checked, written

May import: core
"""
