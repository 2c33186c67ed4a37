#!/usr/bin/env python3
"""Export scikit-learn's bundled digits (1797 UCI 8x8 grey images, values 0..16) as an .npy
matrix, one image per row, for `fashion_ood --extra-ood digits=FILE` (the pipeline rescales
them to [0, 1] and resizes them bilinearly to 28x28).

No real image data set other than Fashion-MNIST is packaged for Debian here
(`apt-cache search dataset-` lists only dataset-fashion-mnist); scikit-learn ships these
digits inside its wheel, so no download is needed.

Usage: python3 export_sklearn_digits.py OUT.npy
"""
import sys

import numpy as np
from sklearn.datasets import load_digits

if len(sys.argv) != 2:
    sys.exit(__doc__)
digits = load_digits()
np.save(sys.argv[1], digits.data.astype(np.float64))
print(f"wrote {sys.argv[1]}: {digits.data.shape[0]} images of 8x8")
