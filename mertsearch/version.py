"""The package version, in a module of its own: any layer can read it without importing the public
API in mertsearch/__init__.py (which imports the catalog and everything below it)."""

__version__ = "0.1.0"
