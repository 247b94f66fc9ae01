"""Digit Recognizer kit: a from-scratch NumPy neural network for Kaggle's MNIST-as-CSV.

The subpackages are the map (docs/architecture.md has the table): core, nn, data, run, kaggle,
onnx, report, serve, sweep, bench, with cli, config and demo at the top. Each subpackage's
docstring says what it holds and what it may import; tests/test_architecture.py checks it.
"""

from kit.core.version import VERSION as __version__

__all__ = ["__version__"]
