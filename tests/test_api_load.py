"""A bounded mixed load (uploads, similar, radio, path, audio ranges, /health, page loads) on loopback
while an index and a reindex run: every request answered, none with a 5xx."""

import threading

import pytest

from bench.load import TOKEN, make_catalog, mixed_load, writers
from mertsearch.api.app import Settings

from .servers import running


@pytest.mark.slow
def test_a_mixed_load_during_an_index_and_a_reindex_gets_no_5xx(tmp_path):
    catalog, more, clip = make_catalog(tmp_path, tracks=6, more=6)
    with running(Settings(catalog=catalog, token=TOKEN)) as url:
        ran: list = []
        writing = threading.Thread(target=lambda: ran.extend(writers(catalog, more)))
        writing.start()
        load = mixed_load(
            url, token=TOKEN, clip=clip, clients=4, requests=12, track_ids=list(range(1, 7)), during=writing
        )
        writing.join()
    summary = load.summary()
    print(summary)
    assert all(r.returncode == 0 for r in ran), [r.stderr[-1000:] for r in ran]
    assert summary["server_errors"] == 0 and not load.dropped, (summary, load.dropped[:3])
    assert set(load.statuses) <= {200, 206} and summary["requests"] >= 48, (summary, load.errors)
    assert all(figures["n"] > 0 for figures in summary["ms"].values())
