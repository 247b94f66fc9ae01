"""The neural network, from scratch in NumPy: what the notebook the kit grew from built.

    layers.py        Dense, the activations (a registry), Dropout, BatchNorm
    image_layers.py  Conv2D (Winograd or im2col, pooling fused), MaxPool2D, Reshape, Flatten
    losses.py        softmax fused with cross-entropy
    optim.py         the flat parameter store and the optimisers (a registry)
    schedules.py     learning-rate schedules (a registry)
    metrics.py       loss, accuracy and confusion matrix of predicted probabilities
    network.py       Network: a stack of layers, and its one plain training step
    replicas.py      the same step data-parallel over the cores, as a wrapper around it

May import: core
"""
