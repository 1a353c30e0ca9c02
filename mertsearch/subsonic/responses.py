"""Subsonic response envelopes in the format a request asks for (``f``: xml by default, json,
jsonp), and the extension this pass-through adds to the upstream's list of OpenSubsonic
extensions."""

from __future__ import annotations

import json
import re
import xml.etree.ElementTree as ET

from starlette.responses import Response

from mertsearch.version import __version__

API_VERSION = "1.16.1"
NAMESPACE = "http://subsonic.org/restapi"
EXTENSION = {"name": "sonicSimilarity", "versions": [1]}

# Subsonic's error codes (docs: Responses/error).
GENERIC, MISSING_PARAMETER, WRONG_CREDENTIALS, NOT_FOUND = 0, 10, 40, 70

ET.register_namespace("", NAMESPACE)


# A JSONP callback a page may name: dotted JavaScript identifiers, nothing that could be a script.
CALLBACK = re.compile(r"[A-Za-z_$][A-Za-z0-9_$]*(\.[A-Za-z_$][A-Za-z0-9_$]*)*")


class Format:
    """How a request wants its answer: ``f=json``, ``f=jsonp&callback=NAME`` or XML. A callback
    that is not a plain identifier is refused (``valid`` False): the answer is then JSON."""

    def __init__(self, f: str | None, callback: str | None = None) -> None:
        self.kind = f if f in ("json", "jsonp") else "xml"
        self.callback = callback or "callback"
        self.valid = self.kind != "jsonp" or bool(CALLBACK.fullmatch(self.callback))
        if not self.valid:
            self.kind = "json"


def envelope(status: str, **payload) -> dict:
    return {
        "status": status,
        "version": API_VERSION,
        "type": "mertsearch",
        "serverVersion": __version__,
        "openSubsonic": True,
        **payload,
    }


def ok(fmt: Format, **payload) -> Response:
    return render(envelope("ok", **payload), fmt)


def error(fmt: Format, code: int, message: str) -> Response:
    # Subsonic servers answer errors with HTTP 200: clients read the envelope's status.
    return render(envelope("failed", error={"code": code, "message": message}), fmt)


NOSNIFF = {"X-Content-Type-Options": "nosniff"}


def render(body: dict, fmt: Format) -> Response:
    if fmt.kind == "xml":
        root = to_xml("subsonic-response", body)
        root.set("xmlns", NAMESPACE)
        data = b'<?xml version="1.0" encoding="UTF-8"?>' + ET.tostring(root, encoding="utf-8", xml_declaration=False)
        return Response(data, media_type="text/xml; charset=utf-8", headers=NOSNIFF)
    text = json.dumps({"subsonic-response": body}, ensure_ascii=False, separators=(",", ":"))
    if fmt.kind == "jsonp":
        return Response(f"{fmt.callback}({text});", media_type="application/javascript; charset=utf-8", headers=NOSNIFF)
    return Response(text, media_type="application/json; charset=utf-8", headers=NOSNIFF)


def to_xml(name: str, value: dict) -> ET.Element:
    """Subsonic's XML for a JSON object: scalars are attributes, objects child elements, arrays
    repeated child elements (an array of scalars: elements holding text, as in ``<versions>1</versions>``)."""
    element = ET.Element(name)
    for key, item in value.items():
        for one in item if isinstance(item, list) else [item]:
            if isinstance(one, dict):
                element.append(to_xml(key, one))
            elif isinstance(item, list):
                ET.SubElement(element, key).text = _text(one)
            elif one is not None:
                element.set(key, _text(one))
    return element


def _text(value) -> str:
    return ("true" if value else "false") if isinstance(value, bool) else str(value)


def with_extension(body: bytes, fmt: Format) -> bytes | None:
    """The upstream's successful getOpenSubsonicExtensions answer with sonicSimilarity added;
    None when it is not one (a server without the endpoint, an error): the caller answers alone."""
    try:
        if fmt.kind == "xml":
            root = ET.fromstring(body)
            if root.get("status") != "ok":
                return None
            tag = f"{{{NAMESPACE}}}openSubsonicExtensions" if root.tag.startswith("{") else "openSubsonicExtensions"
            if not any(e.get("name") == EXTENSION["name"] for e in root.iter(tag)):
                added = ET.SubElement(root, tag, name=EXTENSION["name"])
                ET.SubElement(added, tag.replace("openSubsonicExtensions", "versions")).text = "1"
            return ET.tostring(root, encoding="utf-8", xml_declaration=True)
        text = body.decode("utf-8")
        prefix, suffix = "", ""
        if fmt.kind == "jsonp":  # NAME({...});
            start, end = text.index("("), text.rindex(")")
            prefix, suffix, text = text[: start + 1], text[end:], text[start + 1 : end]
        answer = json.loads(text)
        inner = answer["subsonic-response"]
        if inner.get("status") != "ok":
            return None
        extensions = inner.setdefault("openSubsonicExtensions", [])
        if not any(e.get("name") == EXTENSION["name"] for e in extensions):
            extensions.append(EXTENSION)
        return (prefix + json.dumps(answer, ensure_ascii=False, separators=(",", ":")) + suffix).encode("utf-8")
    except (ValueError, KeyError, TypeError, AttributeError, ET.ParseError):
        return None
