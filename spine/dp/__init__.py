"""Differential privacy for SpineGAN: DP-SGD on the discriminator (per-sample clipping, Gaussian noise, Opacus
accounting, Poisson sampling of images or studies), the authors' non-private noise-and-clip scheme for ablations,
and the guards that make the rest of training safe in DP mode. The loop sees DP through the plug-ins that
`options.build` returns: the D update (`update`), the Poisson sampling of the reals (`sampling`), the public
fake-label prior (`guards`) and the privacy account's record, budget stop and tick report (`ledger`).
"""
