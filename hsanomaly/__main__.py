"""``python -m hsanomaly``: the same command as ``hsanomaly``."""

from .cli import main

if __name__ == "__main__":
    main(prog_name="hsanomaly")
