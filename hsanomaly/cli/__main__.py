"""``python -m hsanomaly.cli``: the same command as ``hsanomaly``."""

from . import main

if __name__ == "__main__":
    main(prog_name="hsanomaly")
