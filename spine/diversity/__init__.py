"""Generator terms that keep a generator's samples varied (mode seeking)."""
