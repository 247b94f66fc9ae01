"""The neural network, from scratch in NumPy: what the notebook the kit grew from built.

    layers.py        Dense, the activations (a registry), Dropout, BatchNorm
    conv.py          Conv2D: a 3x3 convolution with its block's pooling fused, Winograd or im2col
    image_layers.py  the image layout, MaxPool2D, Reshape, Flatten
    losses.py        softmax fused with cross-entropy
    optim.py         the flat parameter store and the optimisers (a registry)
    schedules.py     learning-rate schedules (a registry)
    metrics.py       loss, accuracy and confusion matrix of predicted probabilities
    network.py       Network: a stack of layers, and its one plain training step
    replicas.py      the same step data-parallel over the cores, as a wrapper around it

May import: core
"""
