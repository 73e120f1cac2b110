"""`python -m spine.classifier train|evaluate` (see spine.classifier.cli)."""

from spine.classifier.cli import cli

if __name__ == "__main__":
    cli()
