"""Evaluation: AUC and intervals, labelled synthetic datasets, downstream synthetic learning, privacy audit."""
