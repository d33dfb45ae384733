"""``python -m kernbench``: same as the ``kernbench`` console script."""

from kernbench.cli.main import main

if __name__ == "__main__":
    main()
