"""Torch helpers and custom ops that know nothing of GANs."""
