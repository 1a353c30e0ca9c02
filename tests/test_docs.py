"""The documentation keeps up with the code: every command and HTTP route is documented, the README
stays a front page, and every relative link in README.md and docs/ leads somewhere that exists."""

import re
from pathlib import Path

import typer
from starlette.routing import Route

from mertsearch.api.app import Settings, create_app
from mertsearch.cli import app as cli_app

ROOT = Path(__file__).resolve().parent.parent
README = ROOT / "README.md"
DOCS = ROOT / "docs"
CLI_DOC = DOCS / "cli.md"
HTTP_DOC = DOCS / "http-api.md"
README_MAX_LINES = 220
# FastAPI's own pages, not routes of the product.
FASTAPI_PAGES = {"/openapi.json", "/docs", "/docs/oauth2-redirect", "/redoc"}

FENCE = re.compile(r"^(```|~~~)[^\n]*\n.*?^\1[^\n]*$", re.M | re.S)
HEADING = re.compile(r"^#{1,6}[ \t]+(.+?)[ \t#]*$", re.M)
CODE_SPAN = re.compile(r"`([^`\n]+)`")
LINK = re.compile(r"!?\[[^\]\n]*\]\(\s*<?([^)\s>]+)>?(?:\s+\"[^\"]*\")?\s*\)")
SCHEME = re.compile(r"^[a-zA-Z][a-zA-Z0-9+.-]*:")


def markdown_files() -> list[Path]:
    return [README, *sorted(DOCS.glob("*.md"))]


def prose(text: str) -> str:
    """Markdown without its fenced code blocks."""
    return FENCE.sub("", text)


def headings(text: str) -> list[str]:
    return [match.group(1).strip() for match in HEADING.finditer(prose(text))]


def documented_names(path: Path) -> set[str]:
    """What a page documents by name: its headings (backticks dropped) and its code spans."""
    text = path.read_text(encoding="utf-8")
    names = {heading.replace("`", "").strip() for heading in headings(text)}
    return names | {span.strip() for span in CODE_SPAN.findall(prose(text))}


def anchors(path: Path) -> set[str]:
    """The heading anchors a page has, as GitHub makes them ("## Weights offline" -> "weights-offline")."""
    found: set[str] = set()
    for heading in headings(path.read_text(encoding="utf-8")):
        slug = re.sub(r"[^\w\- ]", "", heading.lower()).replace(" ", "-")
        anchor, repeat = slug, 0
        while anchor in found:  # a repeated heading gets -1, -2, ...
            repeat += 1
            anchor = f"{slug}-{repeat}"
        found.add(anchor)
    return found


def cli_commands() -> list[str]:
    """Full names of every command and subcommand of the CLI: "mertsearch index", "mertsearch models download"."""

    def walk(group, prefix: str):
        for name, command in sorted(group.commands.items()):
            if command.hidden:
                continue
            full = f"{prefix} {name}"
            yield full
            if hasattr(command, "commands"):  # a group (typer vendors click, so no isinstance check)
                yield from walk(command, full)

    return list(walk(typer.main.get_command(cli_app), "mertsearch"))


def http_routes() -> list[str]:
    """ "METHOD /path" of every route of the HTTP app, built but never started (no catalog is opened)."""
    app = create_app(Settings(catalog=Path("no-catalog-needed")))
    found = []
    for route in app.routes:  # static mounts are not Routes
        if isinstance(route, Route) and route.path not in FASTAPI_PAGES:
            found += [f"{method} {route.path}" for method in sorted(route.methods - {"HEAD"})]
    return found


def test_every_cli_command_is_documented():
    commands = cli_commands()
    assert commands, "no CLI command found"
    names = documented_names(CLI_DOC)
    missing = [command for command in commands if command not in names]
    assert not missing, f"not a heading or code span in {CLI_DOC.relative_to(ROOT)}: {missing}"


def test_every_http_route_is_documented():
    routes = http_routes()
    assert routes, "no HTTP route found"
    names = documented_names(HTTP_DOC)
    missing = [route for route in routes if route not in names]
    assert not missing, f"not a heading or code span in {HTTP_DOC.relative_to(ROOT)}: {missing}"


def test_readme_is_a_front_page():
    lines = len(README.read_text(encoding="utf-8").splitlines())
    assert lines <= README_MAX_LINES, f"README.md has {lines} lines; move detail into docs/"


def test_every_docs_page_has_a_title_and_a_summary_and_is_linked_from_the_readme():
    pages = sorted(DOCS.glob("*.md"))
    assert pages, "no docs/*.md"
    readme_links = {target.split("#")[0] for target in LINK.findall(prose(README.read_text(encoding="utf-8")))}
    for page in pages:
        lines = [line for line in page.read_text(encoding="utf-8").splitlines() if line.strip()]
        assert lines[0].startswith("# "), f"{page.name} does not begin with a title"
        summary = not lines[1].startswith(("#", "```", "~~~", "|", "- ", "* ", "!["))
        assert summary, f"{page.name}: no line saying what is in it after the title"
        assert f"docs/{page.name}" in readme_links, f"README.md does not link docs/{page.name}"


def test_relative_links_resolve():
    broken = []
    for source in markdown_files():
        text = CODE_SPAN.sub("", prose(source.read_text(encoding="utf-8")))
        for target in LINK.findall(text):
            if SCHEME.match(target):
                continue  # a web address
            file_part, _, anchor = target.partition("#")
            destination = (source.parent / file_part).resolve() if file_part else source
            where = f"{source.relative_to(ROOT)} -> {target}"
            if not destination.exists():
                broken.append(f"{where}: no such file")
            elif anchor and destination.suffix == ".md" and anchor not in anchors(destination):
                broken.append(f"{where}: no such heading")
    assert not broken, "broken links:\n" + "\n".join(broken)


def test_the_readme_says_what_the_server_promises_and_what_it_does_not():
    serve = prose(README.read_text(encoding="utf-8")).split("## Serve", 1)[1].split("\n## ", 1)[0]
    for promise in ("token", "constant time", "401", "signed audio URLs", "indexed", "worker processes"):
        assert promise in serve, promise
    assert "TLS" in serve and "reverse proxy" in serve and "http-api.md#security" in serve
    assert "security" in anchors(HTTP_DOC)
