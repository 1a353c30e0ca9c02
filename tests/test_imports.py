"""The package's import direction (docs/internals.md#package-layout), read from the source with ast.

Every import counts: at module level, inside functions (the lazy ones that keep torch out of
`info`) and under `if TYPE_CHECKING:`. A lazy import still couples two modules; it only hides
the cycle from Python until the day someone moves it to the top.
"""

import ast
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parent.parent / "mertsearch"

# Each top-level module or subpackage of mertsearch, by layer, lowest first. A module may import
# its own layer or lower ones, never a higher one.
LAYERS = [
    # Helpers under everything: errors, frozen settings, file hashing, text folding, the cache
    # of weights hashes and precision decisions, the version.
    {"errors", "config", "files", "cache", "version", "text"},
    # The parts: decoding and windows, models, the database and FAISS.
    {"audio", "encoder", "storage"},
    # What is done with the parts: ingest, queries, evaluation.
    {"indexer", "search", "evaluation"},
    # The facade, and the manifest it is opened with (settings: from what is asked to the manifest).
    {"catalog", "settings"},
    # The ways in: the public API (mertsearch/__init__.py, "" here), the command line, the HTTP
    # app and its client, the music players fed from a catalog, the Subsonic pass-through.
    {"", "cli", "api", "client", "players", "subsonic"},
]

# Libraries a part must not pull in: storage runs where no model does, and the encoder runs on
# Ray nodes that never open a database or an index.
FORBIDDEN_LIBRARIES = {
    "storage": {"torch", "torchaudio", "torchcodec", "transformers"},
    "encoder": {"faiss", "sqlalchemy"},
}

# Imports that break the rules, each with why it is tolerated: (importing module, imported module).
EXCEPTIONS: set[tuple[str, str]] = set()


def modules() -> dict[str, Path]:
    """Every module of the package by dotted name ("mertsearch.encoder.mert"; "mertsearch" for __init__)."""
    found = {}
    for path in sorted(PACKAGE.rglob("*.py")):
        parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
        found[".".join(parts[:-1] if parts[-1] == "__init__" else parts)] = path
    return found


MODULES = modules()


def imports(name: str) -> set[str]:
    """The modules ``name`` imports, anywhere in its source (see :func:`imports_in`)."""
    path = MODULES[name]
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    return imports_in(path.read_text(encoding="utf-8"), package=package)


def imports_in(source: str, *, package: str) -> set[str]:
    """The modules some source in ``package`` imports: mertsearch modules by their dotted name,
    other libraries by their top-level name."""
    found = set()
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Import):
            found |= {alias.name for alias in node.names}
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:  # relative: from this package, or level - 1 packages up
                parts = package.split(".")
                base = ".".join([*parts[: len(parts) - node.level + 1], *([base] if base else [])])
            for alias in node.names:
                # "from mertsearch import cache" imports the module mertsearch.cache; "from
                # mertsearch import Catalog" the package itself.
                submodule = f"{base}.{alias.name}"
                found.add(submodule if submodule in MODULES else base)
    return {module if module.startswith("mertsearch") else module.split(".")[0] for module in found}


def unit(module: str) -> str:
    """The layer unit a mertsearch module belongs to: "encoder" for mertsearch.encoder.mert, "" for mertsearch."""
    parts = module.split(".")
    return parts[1] if len(parts) > 1 else ""


def layer(module: str) -> int:
    for number, units in enumerate(LAYERS):
        if unit(module) in units:
            return number
    raise AssertionError(f"{module} is in no layer: add {unit(module)!r} to LAYERS in {__file__}")


def own_edges() -> set[tuple[str, str]]:
    """(importer, imported) for every import of one mertsearch module by another."""
    return {
        (name, imported)
        for name in MODULES
        for imported in imports(name)
        if imported.startswith("mertsearch") and imported != name
    }


def test_every_module_sits_in_a_layer():
    for name in MODULES:
        layer(name)


def test_no_module_imports_a_higher_layer():
    wrong = sorted(
        f"{importer} (layer {layer(importer)}) imports {imported} (layer {layer(imported)})"
        for importer, imported in own_edges() - EXCEPTIONS
        if layer(imported) > layer(importer)
    )
    assert not wrong, "imports against the layer order:\n" + "\n".join(wrong)


def test_nothing_imports_the_command_line():
    importers = sorted(
        importer for importer, imported in own_edges() if unit(imported) == "cli" and unit(importer) != "cli"
    )
    assert not importers, f"the command line is imported by {', '.join(importers)}"


@pytest.mark.parametrize("part", sorted(FORBIDDEN_LIBRARIES))
def test_parts_keep_out_of_libraries_they_do_not_need(part):
    wrong = sorted(
        f"{name} imports {library}"
        for name in MODULES
        if unit(name) == part
        for library in imports(name) & FORBIDDEN_LIBRARIES[part]
    )
    assert not wrong, "\n".join(wrong)


def test_no_cycle_between_packages():
    """Units of one layer may import each other, but only one way (e.g. encoder -> audio)."""
    graph: dict[str, set[str]] = {}
    for importer, imported in own_edges() - EXCEPTIONS:
        if unit(importer) != unit(imported):
            graph.setdefault(unit(importer), set()).add(unit(imported))

    def cycle_from(start: str, path: list[str]) -> list[str] | None:
        for following in sorted(graph.get(path[-1], ())):
            if following == start:
                return [*path, start]
            if following not in path:
                found = cycle_from(start, [*path, following])
                if found:
                    return found
        return None

    for start in sorted(graph):
        found = cycle_from(start, [start])
        assert found is None, "a cycle between packages: " + " -> ".join(name or "mertsearch" for name in found)


def test_the_checker_sees_every_kind_of_import():
    """Lazy, TYPE_CHECKING-only, relative and from-package imports are all found."""
    source = (
        "from typing import TYPE_CHECKING\n"
        "if TYPE_CHECKING:\n"
        "    from mertsearch.catalog import Catalog\n"
        "def f():\n"
        "    import torch.nn\n"
        "    from . import pipeline\n"
        "    from ..storage import store\n"
        "    from mertsearch import cache, Catalog\n"
    )
    assert imports_in(source, package="mertsearch.indexer") == {
        "typing",
        "torch",
        "mertsearch.catalog",
        "mertsearch.indexer.pipeline",
        "mertsearch.storage.store",
        "mertsearch.cache",
        "mertsearch",
    }
    assert layer("mertsearch.catalog") > layer("mertsearch.indexer.distributed")


def test_importing_one_part_does_not_load_the_catalog():
    """Python runs mertsearch/__init__.py for any submodule: it must not pull in the facade, FAISS
    and SQLAlchemy (a Ray node's decode stage imports only the audio code)."""
    import subprocess
    import sys

    probe = (
        "import sys, mertsearch.audio.decode, mertsearch.errors\n"
        "print(sorted(m for m in ('faiss', 'sqlalchemy', 'mertsearch.catalog') if m in sys.modules))\n"
        "import mertsearch\n"
        "from mertsearch import Catalog, Filters, IndexReport\n"
        "print(all(hasattr(mertsearch, name) for name in mertsearch.__all__), Catalog.__module__)\n"
    )
    done = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, check=True)
    assert done.stdout.split("\n")[:2] == ["[]", "True mertsearch.catalog.facade"], done.stdout
