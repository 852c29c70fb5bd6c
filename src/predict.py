"""Classify digit images with a registered model (the champion by default).

    python -m src.predict digit.png more.png          # PNG/JPEG/..., or .npz arrays
    python -m src.predict --model models:/mnist-cnn/3 digit.png

The work is ``src.registry.predict``; this module is the command's short name.
"""

import sys

from src.registry.predict import main

if __name__ == "__main__":
    sys.exit(main())
