"""The data stage: read MNIST-format digits (``sources``), split and scale them (``dataset``).

``mnist_format`` holds the format's constants; ``build_mnist_10k`` rebuilds the bundled
sample ``mnist_10k.npz`` from the official files.
"""
