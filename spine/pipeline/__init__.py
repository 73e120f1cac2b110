"""Pipelines: the experiment runner (the paper's comparison from one config), the demo, the HTML report."""
