"""The medical side: DICOM and labels, phantom, classifier, clinical loss, DP, synthesis, evaluation, report."""
