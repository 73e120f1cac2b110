"""Differential privacy for SpineGAN: DP-SGD on the discriminator (per-sample clipping, Gaussian noise, Opacus
accounting, Poisson sampling of images or studies), the authors' non-private noise-and-clip scheme for ablations,
and the guards that make the rest of training safe in DP mode. The loop sees only `update.DPDiscriminatorUpdate`.
"""
