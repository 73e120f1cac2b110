"""StyleGAN2-ADA networks, augmentation, loss, dataset and training loop."""
