"""schemathesis against the served OpenAPI schema, with no token configured and with one (sent
valid, wrong and malformed): whatever it sends, no 5xx, and a refused credential never gets data."""

import shutil

import pytest
import schemathesis
from hypothesis import HealthCheck, given, settings
from schemathesis.checks import not_a_server_error

from mertsearch import Catalog
from mertsearch.api.app import Settings

from .servers import running

EXAMPLES = 40  # per operation
REFUSED_EXAMPLES = 15  # per operation, with a credential that is refused (nearly all 401s)
TOKEN = "fuzz-token"


def refused_everywhere(_ctx, response, case) -> None:
    """With a wrong or malformed credential only /health may answer with success."""
    if case.operation.path != "/health" and response.status_code < 300:
        raise AssertionError(f"{case.operation.label} answered {response.status_code} to a refused credential")


def _fuzz(operation, url: str, sent: dict[str, int], *, headers: dict, checks: list, examples: int) -> None:
    @given(case=operation.as_strategy())
    @settings(max_examples=examples, deadline=None, database=None, suppress_health_check=list(HealthCheck))
    def check(case):
        case.call_and_validate(base_url=url, headers=headers, checks=checks)
        sent[operation.label] = sent.get(operation.label, 0) + 1

    check()


@pytest.fixture(scope="module")
def catalog_dir(tmp_path_factory, tiny_model, music_source):
    root = tmp_path_factory.mktemp("fuzz")
    music = shutil.copytree(music_source, root / "music")
    with Catalog.create(root / "cat", model=str(tiny_model), layer=3) as cat:
        cat.index_paths([music], decoders=0)
    return root / "cat"


@pytest.mark.slow
@pytest.mark.parametrize(
    "token,authorization,refused",
    [
        (None, None, False),
        (TOKEN, f"Bearer {TOKEN}", False),
        (TOKEN, "Bearer wrong-token", True),
        (TOKEN, b"Bearer caf\xc3\xa9", True),
        (TOKEN, b"Basic \xff\xfe", True),
    ],
    ids=["no-token-configured", "valid-token", "wrong-token", "non-ascii-token", "malformed-scheme"],
)
def test_no_request_gets_a_server_error(catalog_dir, token, authorization, refused):
    settings_ = Settings(catalog=catalog_dir, token=token, max_upload_bytes=2_000_000, max_clip_seconds=30)
    headers = {"Authorization": authorization} if authorization else {}
    checks = [not_a_server_error, refused_everywhere] if refused else [not_a_server_error]
    examples = REFUSED_EXAMPLES if refused else EXAMPLES
    with running(settings_) as url:
        schema = schemathesis.openapi.from_url(f"{url}/openapi.json")
        sent: dict[str, int] = {}
        operations = 0
        for result in schema.get_all_operations():
            operations += 1
            _fuzz(result.ok(), url, sent, headers=headers, checks=checks, examples=examples)
    # Operations without parameters have one possible request; the others get their examples each.
    assert operations >= 8 and len(sent) == operations and sum(sent.values()) >= 4 * examples, sent
