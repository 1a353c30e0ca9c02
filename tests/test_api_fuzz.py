"""schemathesis against the served OpenAPI schema: whatever it sends, no 5xx."""

import shutil

import pytest
import schemathesis
from hypothesis import HealthCheck, given, settings
from schemathesis.checks import not_a_server_error

from mertsearch import Catalog
from mertsearch.api.app import Settings

from .servers import running

EXAMPLES = 40  # per operation


def _fuzz(operation, url: str, sent: dict[str, int]) -> None:
    @given(case=operation.as_strategy())
    @settings(max_examples=EXAMPLES, deadline=None, database=None, suppress_health_check=list(HealthCheck))
    def check(case):
        case.call_and_validate(base_url=url, checks=[not_a_server_error])
        sent[operation.label] = sent.get(operation.label, 0) + 1

    check()


@pytest.mark.slow
def test_no_request_gets_a_server_error(tmp_path, tiny_model, music_source):
    music = shutil.copytree(music_source, tmp_path / "music")
    with Catalog.create(tmp_path / "cat", model=str(tiny_model), layer=3) as cat:
        cat.index_paths([music], decoders=0)
    settings_ = Settings(catalog=tmp_path / "cat", max_upload_bytes=2_000_000, max_clip_seconds=30)
    with running(settings_) as url:
        schema = schemathesis.openapi.from_url(f"{url}/openapi.json")
        sent: dict[str, int] = {}
        operations = 0
        for result in schema.get_all_operations():
            operations += 1
            _fuzz(result.ok(), url, sent)
    # Operations without parameters have one possible request; the others get EXAMPLES each.
    assert operations >= 7 and len(sent) == operations and sum(sent.values()) >= 4 * EXAMPLES, sent
