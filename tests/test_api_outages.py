"""An outage of the catalog's database or vector store answers 503 with Retry-After: the request may
work later, and it is no fault of the client's (not a 400) nor a bug (not a 500)."""

import os
import shutil

import httpx
import pytest

from mertsearch import Catalog
from mertsearch.api.app import Settings
from mertsearch.errors import DatabaseError, VectorStoreError

from .servers import running


@pytest.fixture(scope="module")
def served(tmp_path_factory, tiny_model, music_source):
    """(url, the server's open catalog)."""
    root = tmp_path_factory.mktemp("outages")
    music = shutil.copytree(music_source, root / "music")
    with Catalog.create(root / "cat", model=str(tiny_model), layer=3) as cat:
        cat.index_paths([music / "a.wav", music / "b.flac"], decoders=0)
    opened: list[Catalog] = []
    real_open = Catalog.open.__func__

    def recording_open(cls, *args, **kwargs):
        opened.append(real_open(cls, *args, **kwargs))
        return opened[-1]

    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(Catalog, "open", classmethod(recording_open))
        with running(Settings(catalog=root / "cat")) as url:
            yield url, opened[0]


def assert_outage(response: httpx.Response) -> None:
    assert response.status_code == 503, response.text
    assert response.json()["status"] == 503
    assert int(response.headers["retry-after"]) > 0


def test_a_database_file_gone_is_503_and_the_server_recovers(served):
    url, catalog = served
    database = catalog.store.engine.url.database
    os.rename(database, f"{database}.away")
    os.mkdir(database)  # what opens there now is no database
    catalog.store.engine.dispose()  # connections opened before the outage are dropped, as a restarted server's
    try:
        for route in ["/tracks/1", "/tracks?q=a", "/tracks/1/similar", "/info"]:
            response = httpx.get(f"{url}{route}", timeout=30)
            assert_outage(response)
            assert "OperationalError" in response.json()["message"] and database not in response.text
        assert_outage(httpx.get(f"{url}/tracks/1/audio", timeout=30))
    finally:
        os.rmdir(database)
        os.rename(f"{database}.away", database)
    assert httpx.get(f"{url}/tracks/1", timeout=30).status_code == 200


@pytest.mark.parametrize(
    "error",
    [VectorStoreError("the Milvus vector store http://m:19530 failed: unavailable"), DatabaseError("server down")],
)
def test_a_vector_store_or_database_error_is_503(served, monkeypatch, error):
    url, _ = served

    def fail(*_args, **_kwargs):
        raise error

    monkeypatch.setattr(Catalog, "similar", fail)
    monkeypatch.setattr(Catalog, "radio", fail)
    for route in ["/tracks/1/similar", "/radio?history=1"]:
        response = httpx.get(f"{url}{route}", timeout=30)
        assert_outage(response)
        assert response.json()["message"] == str(error)
