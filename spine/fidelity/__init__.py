"""Generator terms that hold a generator's image statistics to the real images' (class-mean matching)."""
