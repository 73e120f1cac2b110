"""Torch helpers and custom ops that know nothing of GANs.

Importing the package turns on MKL's conditional numerical reproducibility (`MKL_CBWR=AUTO,STRICT`) unless the user
set the variable. Without it MKL, torch's CPU matrix product, picks kernels by the operands' memory alignment, so two
runs with the same seed on two or more threads can differ in the last bits; on an AMX Xeon this broke exact resume of
DP runs with micro-batches of one image (the interrupted run differed from the uninterrupted one in 4 of 5 tries). MKL
reads the variable once, at its first call, so it is set here, before any product; it costs nothing measurable
(bench/train_step.py, demo preset and DP step). Every entry point imports this package (`spine` does so on import).
"""

import os

os.environ.setdefault("MKL_CBWR", "AUTO,STRICT")
