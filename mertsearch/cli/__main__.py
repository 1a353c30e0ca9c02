"""`python -m mertsearch.cli`: the same as the `mertsearch` command."""

from mertsearch.cli import main

main()
