"""`python -m spine.phantom`: write a phantom tree (see spine.phantom.tree)."""

from spine.phantom.tree import main

if __name__ == "__main__":
    main()
