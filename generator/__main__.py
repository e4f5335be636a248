"""`python -m generator` is the same program as the `kvmnet` command."""

import sys


def entry() -> int:
    """The `kvmnet` command. Ctrl-C while it is still starting (importing its modules, before
    the CLI's own handler exists) ends it quietly with 130 too, not with a traceback."""
    try:
        from generator.cli import main
    except KeyboardInterrupt:
        return 130
    return main()


if __name__ == "__main__":
    sys.exit(entry())
