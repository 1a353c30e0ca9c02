"""Subsonic answers checked against the OpenSubsonic OpenAPI schemas pinned in tests/openapi/ (see
its README): JSON and JSONP as they are, XML read into the JSON shape first.

An endpoint's schema is the one its OpenAPI operation names for an HTTP 200 answer; each of them
is a oneOf of the endpoint's success response and SubsonicFailureResponse, so errors are checked
against the endpoint they answer. Another endpoint needs only its files in tests/openapi/."""

from __future__ import annotations

import json
import xml.etree.ElementTree as ET
from functools import cache
from pathlib import Path

from jsonschema import Draft4Validator
from referencing import Registry, Resource
from referencing.jsonschema import DRAFT4

OPENAPI = Path(__file__).resolve().parent / "openapi"
NAMESPACE = "{http://subsonic.org/restapi}"
# Where an operation keeps the schema of its HTTP 200 answer (a JSON pointer, "/" written "~1").
ANSWER = "#/get/responses/200/content/application~1json/schema"


@cache
def registry() -> Registry:
    """Every pinned file under its own file URI, so that the spec's relative $refs
    ("../../schemas/Child.json") resolve as they do in the spec's repository. OpenAPI 3.0's schema
    objects are JSON Schema draft 4 as far as these files go ($ref replaces its siblings; 1.0 is
    no integer)."""
    resources = [
        (path.as_uri(), Resource.from_contents(json.loads(path.read_text()), default_specification=DRAFT4))
        for path in OPENAPI.rglob("*.json")
    ]
    return Registry().with_resources(resources)


def _uri(endpoint: str) -> str:
    return (OPENAPI / "endpoints" / f"{endpoint}.json").as_uri() + ANSWER


@cache
def validator(endpoint: str) -> Draft4Validator:
    # "format" (date-time) is left unchecked, as draft 4 validators do unless asked.
    return Draft4Validator({"$ref": _uri(endpoint)}, registry=registry())


def validate(endpoint: str, body: bytes | str, kind: str) -> dict:
    """``body``, an answer of ``endpoint`` in ``kind`` ("json", "jsonp" or "xml"), as a JSON
    document once it has passed the endpoint's schema (jsonschema.ValidationError otherwise)."""
    text = body.decode("utf-8") if isinstance(body, bytes) else body
    if kind == "xml":
        document = from_xml(endpoint, text)
    else:
        if kind == "jsonp":  # NAME({...});
            assert text.endswith(");"), text[-20:]
            text = text[text.index("(") + 1 : -2]
        document = json.loads(text)
    validator(endpoint).validate(document)
    return document


def from_xml(endpoint: str, text: str) -> dict:
    """Subsonic's XML in the JSON shape, read alongside the endpoint's schema: attributes are
    scalars, coerced to the type the schema gives them there; child elements are objects, or
    array items where the schema has an array (an array of scalars: elements holding text, as in
    ``<versions>1</versions>``); a required array that no element carries is empty (XML has
    no other way to write one). What the schema does not name stays as XML gives it: strings, objects."""
    root = ET.fromstring(text)
    name = _local(root.tag)
    schema = _resolved({"$ref": _uri(endpoint)}, registry().resolver())
    return {name: _element(root, _properties(schema).get(name, []))}


def _element(element: ET.Element, schemas: list) -> dict:
    document: dict = {}
    properties = _properties(schemas)
    for key, value in element.attrib.items():
        document[key] = _scalar(value, properties.get(key, []))
    for child in element:
        key = _local(child.tag)
        found = properties.get(key, [])
        array = _is(found, "array")
        each = _items(found) if array else found
        if _is(each, "object") or not _types(each):
            value = _element(child, each)
        else:
            value = _scalar(child.text or "", each)
        if array:
            document.setdefault(key, []).append(value)
        elif key in document:  # repeated where the schema has no array: a list, for validation to refuse
            previous = document[key]
            document[key] = [*(previous if isinstance(previous, list) else [previous]), value]
        else:
            document[key] = value
    required = {key for schema, _ in schemas for key in schema.get("required", [])}
    for key, found in properties.items():
        if key in required and key not in document and _is(found, "array"):
            document[key] = []
    return document


def _scalar(text: str, schemas: list):
    """An attribute's (or a scalar element's) text as the type the schema asks for; text that is
    no such value stays a string, for validation to refuse."""
    types = _types(schemas)
    try:
        if "integer" in types:
            return int(text)
        if "number" in types:
            return float(text)
    except ValueError:
        return text
    if "boolean" in types and text in ("true", "false"):
        return text == "true"
    return text


# The schema is walked as (subschema, resolver) pairs: a $ref resolves against the file it is in.
# Where a schema combines others (allOf, oneOf: success or failure), all of them are walked, so a
# name finds its schema in whichever branch has it.


def _resolved(schema: dict, resolver) -> list:
    if "$ref" in schema:
        found = resolver.lookup(schema["$ref"])
        return _resolved(found.contents, found.resolver)
    pairs = [(schema, resolver)]
    for key in ("allOf", "oneOf", "anyOf"):
        for branch in schema.get(key, []):
            pairs += _resolved(branch, resolver)
    return pairs


def _properties(schemas: list) -> dict[str, list]:
    found: dict[str, list] = {}
    for schema, resolver in schemas:
        for key, sub in schema.get("properties", {}).items():
            found.setdefault(key, []).extend(_resolved(sub, resolver))
    return found


def _items(schemas: list) -> list:
    return [pair for schema, resolver in schemas if "items" in schema for pair in _resolved(schema["items"], resolver)]


def _types(schemas: list) -> set[str]:
    return {schema["type"] for schema, _ in schemas if "type" in schema}


def _is(schemas: list, kind: str) -> bool:
    return kind in _types(schemas)


def _local(tag: str) -> str:
    assert tag.startswith(NAMESPACE), f"{tag} is not in Subsonic's namespace"
    return tag.removeprefix(NAMESPACE)
