"""The medical side: DICOM and labels, phantom, classifier, clinical loss, DP, synthesis, evaluation, report."""

import torch_utils  # noqa: F401  (sets MKL's reproducible mode before any matrix product; see its docstring)
