"""Built-in metrics: FID, KID, precision/recall, IS and domain metrics."""
