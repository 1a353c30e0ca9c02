"""The mertsearch command line: thin wrappers over the Python API, and its one error boundary.

common.py holds the app, the shared options and the error boundary; ingest.py, queries.py,
journeys.py (radio, path), quality.py, admin.py and players.py (mpd-radio) the commands;
results.py and listings.py what they print, through layout.py's tables that fit the terminal.
"""

import sys

# Each module registers its commands when imported: in this order, which `--help` keeps.
# isort: off
from mertsearch.cli import ingest  # noqa: F401
from mertsearch.cli import queries  # noqa: F401
from mertsearch.cli import journeys  # noqa: F401
from mertsearch.cli import quality  # noqa: F401
from mertsearch.cli import admin  # noqa: F401
from mertsearch.cli import players  # noqa: F401

# isort: on
from mertsearch.cli.common import app

__all__ = ["app", "main"]


def main() -> None:
    # A file name that is not valid UTF-8 (held as surrogate escapes) is printed as \udcXX instead
    # of failing the command; inside --json output that is a valid JSON string escape.
    sys.stdout.reconfigure(errors="backslashreplace")
    sys.stderr.reconfigure(errors="backslashreplace")
    app()


if __name__ == "__main__":
    main()
