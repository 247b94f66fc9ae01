"""Digit Recognizer kit: a from-scratch NumPy neural network for Kaggle's MNIST-as-CSV.

The modules and their tiers (a module imports only its own tier or below) are listed in the
README's Layout section and checked by tests/test_architecture.py.
"""

__version__ = "0.1.0"
