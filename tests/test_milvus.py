"""A catalog whose vectors live in Milvus (Lite, and a real Milvus server where
MERTSEARCH_TEST_MILVUS_SERVER is set) answers as the same catalog on exact FAISS indexes:
the same top-k for clips and `similar`, filters that fill k, removals that disappear at once,
and verify/rebuild against the collections."""

from __future__ import annotations

import json
import os
import time

import numpy as np
import pytest

from mertsearch import Catalog
from mertsearch.errors import CatalogMismatchError, InvalidArgumentError
from mertsearch.storage.filters import Filters
from tests.conftest import write_tagged_music
from tests.helpers import DISCERNING, SAMPLE_RATE, cli, melody_track, tone_track, write_audio, write_tiny_mert

if not os.environ.get("CI"):
    pytest.importorskip("milvus_lite", reason="milvus-lite is not installed (pip install 'mertsearch[milvus]')")


KINDS = ["lite", "server"]


@pytest.fixture(scope="session")
def milvus_url(tmp_path_factory):
    """A real Milvus server for the whole session (started once: about 10 s), where
    MERTSEARCH_TEST_MILVUS_SERVER is set (`make test` sets it in its first pass)."""
    if not os.environ.get("MERTSEARCH_TEST_MILVUS_SERVER"):
        pytest.skip("MERTSEARCH_TEST_MILVUS_SERVER is not set (make test sets it and the tests start a Milvus server)")
    from tests.milvus_server import milvus_server

    with milvus_server(tmp_path_factory.mktemp("milvus-server")) as url:
        yield url


def _store(kind: str, folder, request) -> str:
    """A new catalog's vector store: a Milvus Lite file in ``folder``, or the session's server
    (each catalog has collections of its own there)."""
    return f"milvus://{folder / 'vectors.db'}" if kind == "lite" else request.getfixturevalue("milvus_url")


@pytest.fixture(params=KINDS)
def store(request, tmp_path) -> str:
    return _store(request.param, tmp_path, request)


@pytest.fixture(scope="module", params=KINDS)
def twins(tmp_path_factory, request):
    """The twelve tagged tunes of conftest's TAGS in two catalogs built alike, one on FAISS files
    (exact at this size) and one in Milvus (Lite, or a server): (faiss catalog, milvus catalog,
    music folder)."""
    root = tmp_path_factory.mktemp("twins")
    model, _ = write_tiny_mert(root / "model", overrides=DISCERNING)
    write_tagged_music(root / "music")
    store = _store(request.param, root, request)
    with (
        Catalog.create(root / "faiss", model=str(model), layer=2, hop=2.5) as exact,
        Catalog.create(root / "milvus", model=str(model), layer=2, hop=2.5, vector_store=store) as milvus,
    ):
        for cat in (exact, milvus):
            assert cat.index_paths([root / "music"]).added == 12
            cat.reindex(transform="center")  # the Milvus collections are rebuilt in the new kind
        yield exact, milvus, root / "music"


def _clips(music_seconds=((9, 21, 3.3), (2, 14, 1.0), (11, 23, 6.2))):
    for n, seconds, offset in music_seconds:
        source = melody_track(100 + n, seconds, SAMPLE_RATE)
        yield source[:, int(offset * SAMPLE_RATE) : int((offset + 8) * SAMPLE_RATE)], SAMPLE_RATE


def _paths(results) -> list[str]:
    return [r.path.split("/")[-1] for r in results]


def test_the_manifest_records_the_store_and_faiss_keeps_no_index_files(twins):
    exact, milvus, _ = twins
    manifest = json.loads((milvus.directory / "manifest.json").read_text())
    assert manifest["index"]["vector_store"].startswith(("milvus:///", "http://127.0.0.1:"))
    assert manifest["index"]["collections"].startswith("mertsearch_")
    assert "vector_store" not in json.loads((exact.directory / "manifest.json").read_text())["index"]
    assert not list(milvus.directory.rglob("*.faiss")) and list(exact.directory.rglob("*.faiss"))


@pytest.mark.parametrize("mode", ["segments", "tracks"])
def test_clip_queries_give_the_same_top_k_as_exact_faiss(twins, mode):
    exact, milvus, _ = twins
    for clip in _clips():
        expected, got = exact.search(clip, k=5, mode=mode), milvus.search(clip, k=5, mode=mode)
        assert _paths(got) == _paths(expected)
        assert [r.score for r in got] == pytest.approx([r.score for r in expected], abs=1e-4)
        assert [r.match for r in got] == [r.match for r in expected]


@pytest.mark.parametrize("name", ["tracks", "windows"])
def test_the_collections_find_the_neighbours_exact_faiss_finds(twins, name):
    """Below the ranking (which rescores from the stored vectors): Milvus's own neighbours and
    scores, for transformed queries, against FAISS's exact search of the same catalog."""
    exact, milvus, _ = twins
    assert exact.store.ids(name).tolist() == milvus.store.ids(name).tolist()  # built alike: same ids
    queries = exact.transform(exact.store.sample_vectors(name, 6))
    scores, ids = getattr(exact.indexes, name).search(queries, 5)
    got_scores, got_ids = getattr(milvus.indexes, name).search(queries, 5)
    assert got_ids.tolist() == ids.tolist()
    np.testing.assert_allclose(got_scores, scores, atol=1e-5)


def test_similar_gives_the_same_neighbours(twins):
    exact, milvus, music = twins
    for seed in (music / "Ann" / "00.flac", music / "Bob" / "06.flac", music / "Dan" / "11.flac"):
        assert _paths(milvus.similar(seed, k=6)) == _paths(exact.similar(seed, k=6))
        assert _paths(milvus.similar(seed, k=6, mode="segments")) == _paths(exact.similar(seed, k=6, mode="segments"))


@pytest.mark.parametrize("mode", ["segments", "tracks"])
def test_filters_are_searched_inside_milvus_and_fill_k(twins, mode):
    exact, milvus, music = twins
    query = music / "Ann" / "00.flac"
    for filters, expected_count in [
        (Filters(artist=("cat",)), 3),
        (Filters.parse([], min_year=1990, max_year=1999), 4),
        (Filters.parse([f"path={music / 'Dan'}"]), 2),
        (Filters(min_duration=20.5), 3),
        (Filters(artist=("Bob", "dan"), max_year=2002), 2),
        (Filters(genre=("polka",)), 0),
    ]:
        got = milvus.search(query, k=10, mode=mode, filters=filters)
        assert len(got) == expected_count, filters
        assert _paths(got) == _paths(exact.search(query, k=10, mode=mode, filters=filters))
    only_cat = milvus.search(query, k=3, mode=mode, filters=Filters(artist=("CAT",)))
    assert [r.artist for r in only_cat] == ["Cat"] * 3


def test_a_track_without_a_year_passes_no_year_filter(tmp_path, tiny_model, music, store):
    """As in SQL, where a missing year compares false: Milvus holds it as NO_YEAR, not null
    (servers before 2.5 have no nullable fields)."""
    import mutagen

    tagged = mutagen.File(str(music / "b.flac"), easy=True)
    tagged["date"] = "2001"
    tagged.save()
    with Catalog.create(tmp_path / "cat", model=str(tiny_model), vector_store=store) as cat:
        assert cat.index_paths([music]).added == 6
        for filters in (Filters(max_year=2010), Filters(min_year=1900), Filters(min_year=2001, max_year=2001)):
            for mode in ("segments", "tracks"):
                assert _paths(cat.search(music / "a.wav", k=10, mode=mode, filters=filters)) == ["b.flac"], filters
        assert len(cat.search(music / "a.wav", k=10, filters=Filters(max_year=2000))) == 0


def test_a_filter_narrows_both_collections_to_the_allowed_tracks(twins):
    _, milvus, _ = twins
    allowed = milvus.store.track_ids_where(Filters(artist=("bob",)).condition())
    tracks = milvus.indexes.tracks.narrowed(allowed, Filters(artist=("bob",)))
    windows = milvus.indexes.windows.narrowed(allowed, Filters(artist=("bob",)))
    assert tracks.condition == 'artist in ["bob"]'
    assert sorted(tracks.ids().tolist()) == sorted(allowed.tolist())
    bob_windows = sorted(w for track_id in allowed.tolist() for w in _window_ids(milvus, track_id))
    assert windows.ids().tolist() == bob_windows and len(windows) == len(bob_windows)


def _window_ids(cat, track_id: int) -> list[int]:
    from sqlalchemy import select

    from mertsearch.storage.schema import Window

    with cat.store.session() as session:
        return list(session.scalars(select(Window.id).where(Window.track_id == track_id)))


def test_collections_hold_the_database_ids_and_verify_passes(twins):
    _, milvus, _ = twins
    assert milvus.verify() == []
    assert milvus.indexes.tracks.ids().tolist() == milvus.store.ids("tracks").tolist()
    assert milvus.indexes.windows.ids().tolist() == milvus.store.ids("windows").tolist()


def test_removals_and_additions_reach_readers_and_rebuild_mends(tmp_path, tiny_model, music, store):
    with Catalog.create(tmp_path / "cat", model=str(tiny_model), vector_store=store) as writer:
        assert writer.index_paths([music]).added == 6
        reader = Catalog.open(tmp_path / "cat")  # opened before the changes; never reloaded
        first = reader.search(music / "a.wav", k=6)
        assert len(first) == 6
        gone = writer.track_id(music / "b.flac")
        (music / "b.flac").unlink()
        write_audio(music / "new.wav", tone_track(7, 10, SAMPLE_RATE), SAMPLE_RATE)
        report = writer.index_paths([music])
        assert report.removed == 1 and report.added == 1
        after = reader.search(music / "c.mp3", k=10)
        assert gone not in {r.track_id for r in after} and len(after) == 6
        assert "new.wav" in _paths(after)
        assert writer.verify() == []
        # A vector lost from Milvus is found by verify, and rebuild puts it back from the database.
        writer.indexes.client.delete(writer.indexes.names["tracks"], ids=[int(writer.store.ids("tracks")[0])])
        assert any("in the database but not in the Milvus tracks collection" in problem for problem in writer.verify())
        writer.rebuild_index()
        assert writer.verify() == []
        # A vector that is not the stored one is found too.
        first = writer.store.ids("tracks")[:1]
        writer.indexes.tracks.add(first, np.eye(1, writer.manifest.encoder.dim, 3, dtype=np.float32))
        assert any("sampled tracks vectors in Milvus differ" in problem for problem in writer.verify())
        writer.rebuild_index()
        assert writer.verify() == []
        assert len(writer.indexes.tracks) == 6 and len(writer.indexes.windows) == len(writer.store.ids("windows"))
        reader.close()


def test_repair_mends_what_verify_finds_and_leaves_healthy_collections_alone(tmp_path, tiny_model, music, store):
    with Catalog.create(tmp_path / "cat", model=str(tiny_model), vector_store=store) as cat:
        assert cat.index_paths([music]).added == 6
        built = cat.store.meta("milvus_built_at")
        assert cat.repair() == [] and cat.store.meta("milvus_built_at") == built  # nothing rebuilt
        # A vector lost from Milvus is put back from the database, the collections left as they are.
        cat.indexes.client.delete(cat.indexes.names["tracks"], ids=[int(cat.store.ids("tracks")[0])])
        assert cat.repair() == ["inserted 1 tracks from the database"]
        assert cat.store.meta("milvus_built_at") == built and cat.verify() == []
        # A vector that is not the stored one: the collections are built again (a new generation).
        first = cat.store.ids("tracks")[:1]
        cat.indexes.tracks.add(first, np.eye(1, cat.manifest.encoder.dim, 3, dtype=np.float32))
        done = cat.repair()
        assert len(done) == 1 and done[0].startswith("rebuilt both Milvus collections from the stored vectors (")
        assert cat.verify() == [] and cat.repair() == []
        assert len(cat.indexes.windows) == len(cat.store.ids("windows"))


@pytest.mark.parametrize(
    "url, message",
    [
        ("ftp://host/x", "a vector store is"),
        ("milvus://", "names its file"),
        ("http://user:secret@host:19530", "MERTSEARCH_MILVUS_TOKEN"),
        ("https://host:19530?token=abc", "MERTSEARCH_MILVUS_TOKEN"),
    ],
)
def test_a_bad_vector_store_is_refused_before_anything_is_made(tmp_path, tiny_model, url, message):
    with pytest.raises(InvalidArgumentError, match=message):
        Catalog.create(tmp_path / "cat", model=str(tiny_model), vector_store=url)
    assert not (tmp_path / "cat").exists()


def test_reopening_with_another_vector_store_is_a_mismatch(tmp_path, tiny_model):
    Catalog.create(tmp_path / "cat", model=str(tiny_model)).close()
    with pytest.raises(CatalogMismatchError, match="FAISS files"):
        Catalog.open(tmp_path / "cat", vector_store=f"milvus://{tmp_path / 'v.db'}")
    with Catalog.open(tmp_path / "cat") as cat:
        assert cat.info()["tracks"] == 0


def test_a_running_server_sees_what_the_writer_commits(tmp_path, tiny_model, music, store):
    import httpx

    from mertsearch.api.app import Settings
    from tests.servers import running

    with Catalog.create(tmp_path / "cat", model=str(tiny_model), vector_store=store) as writer:
        writer.index_paths([music])
        seed = writer.track_id(music / "a.wav")
        with running(Settings(catalog=tmp_path / "cat", model=str(tiny_model))) as url:

            def similar(**params) -> list[str]:
                answer = httpx.get(f"{url}/tracks/{seed}/similar", params={"k": 10, **params})
                assert answer.status_code == 200, answer.text
                return [r["path"].split("/")[-1] for r in answer.json()["results"]]

            assert sorted(similar()) == ["b.flac", "c.mp3", "d.ogg", "e.wav", "f.flac"]
            assert sorted(similar(filter=f"path={music / 'sub'}")) == ["e.wav", "f.flac"]
            (music / "c.mp3").unlink()
            write_audio(music / "sub" / "g.wav", tone_track(9, 10, SAMPLE_RATE), SAMPLE_RATE)
            writer.index_paths([music])
            assert sorted(similar()) == ["b.flac", "d.ogg", "e.wav", "f.flac", "g.wav"]
            assert sorted(similar(filter=f"path={music / 'sub'}")) == ["e.wav", "f.flac", "g.wav"]


def test_the_command_line_creates_checks_and_rebuilds_a_milvus_catalog(tmp_path, tiny_model, music, store):
    def run(*args, code: int = 0):
        return cli(*args, code=code)

    catalog = tmp_path / "cat"
    run("index", music, "--catalog", catalog, "--model", tiny_model, "--vector-store", store)
    assert json.loads((catalog / "manifest.json").read_text())["index"]["vector_store"] == store
    found = json.loads(run("search", music / "d.ogg", "--catalog", catalog, "-k", 2, "--json").stdout)
    assert found["results"][0]["path"].endswith("d.ogg")
    run("verify", "--catalog", catalog)
    run("rebuild", "--catalog", catalog)
    run("verify", "--catalog", catalog)
    refused = run("index", music, "--catalog", tmp_path / "other", "--vector-store", "redis://x", code=1)
    assert "a vector store is" in refused.output and not (tmp_path / "other").exists()


def test_an_evaluation_copy_searches_faiss_files_not_the_catalogs_collections(twins, tmp_path):
    from mertsearch.catalog.maintenance import _scratch_copy
    from mertsearch.storage.indexes import Indexes

    _, milvus, music = twins
    _scratch_copy(milvus, tmp_path)
    with Catalog.open(tmp_path) as copy:
        assert copy.manifest.index.vector_store is None and isinstance(copy.indexes, Indexes)
        seed = music / "Ann" / "00.flac"
        assert _paths(copy.similar(seed, k=4)) == _paths(milvus.similar(seed, k=4))
    assert milvus.verify() == []


# Runs `mertsearch index` with one MilvusStores method patched to SIGKILL the indexer on its first
# call: after the database committed a change, before Milvus heard of it.
_KILLING_DRIVER = """
import os, signal, sys
from mertsearch.storage.milvus import MilvusStores
method = sys.argv[1]
def killing(self, *args, **kwargs):
    os.kill(os.getpid(), signal.SIGKILL)
setattr(MilvusStores, method, killing)
sys.argv = ["mertsearch", "index", *sys.argv[2:]]
from mertsearch.cli import main
main()
"""

# What Milvus holds, read with pymilvus itself, against the database's ids (Milvus Lite serves
# one process at a time, and a process keeps it until it ends: each look is a process of its own).
_LOOK = """
import json, sys
from mertsearch import Catalog
with Catalog.open(sys.argv[1]) as cat:
    cat.indexes.load()  # collections are searchable once loaded, in each process
    client, names = cat.indexes.client, cat.indexes.names
    rows = {name: client.query(names[name], filter="id >= 0", output_fields=["id"], limit=16384) for name in names}
    held = {name: sorted(int(row["id"]) for row in found) for name, found in rows.items()}
    stored = {name: cat.store.ids(name).tolist() for name in names}
    paths = [r.path.rsplit("/", 1)[-1] for r in cat.search(sys.argv[2], k=3)]
    print(json.dumps({"held": held, "stored": stored, "problems": cat.verify(), "first": paths[0]}))
"""


@pytest.mark.slow
def test_a_writer_killed_between_the_database_and_milvus_is_mended_by_the_next_run(
    tmp_path, tiny_model, music, database, store
):
    """On SQLite (a writer holds the catalog alone) and on PostgreSQL (ingests share it: a record
    is known to be left over only because its process has ended)."""
    import subprocess
    import sys

    if database and not store.startswith("milvus:"):
        pytest.skip("PostgreSQL's road is taken with Milvus Lite, the server's with SQLite: the suite's time")
    catalog = tmp_path / "cat"
    arguments = [str(music), "--catalog", str(catalog), "--model", str(tiny_model), "--decoders", "1"]

    def index(kill_in: str | None = None) -> int:
        program = ["-c", _KILLING_DRIVER, kill_in] if kill_in else ["-m", "mertsearch.cli", "index"]
        run = subprocess.run([sys.executable, *program, *arguments], capture_output=True, text=True)
        assert run.returncode in (0, -9), run.stderr[-2000:]
        return run.returncode

    def look(clip) -> dict:
        run = subprocess.run([sys.executable, "-c", _LOOK, str(catalog), str(clip)], capture_output=True, text=True)
        assert run.returncode == 0, run.stderr[-2000:]
        return json.loads(run.stdout.strip().splitlines()[-1])

    arguments += ["--vector-store", store]
    assert index() == 0
    del arguments[-2:]  # later runs find the store in the manifest

    write_audio(music / "new.wav", tone_track(11, 9, SAMPLE_RATE), SAMPLE_RATE)
    assert index("stored") == -9  # a new track in the database only
    apart = look(music / "a.wav")
    assert set(apart["stored"]["tracks"]) - set(apart["held"]["tracks"])
    joined = " ".join(apart["problems"])
    assert "stopped without finishing" in joined and "but not in the Milvus tracks collection" in joined, joined

    write_audio(music / "sub" / "e.wav", tone_track(12, 11, SAMPLE_RATE), SAMPLE_RATE)  # the same file, new audio
    assert index("stored") == -9  # mended the first kill, then killed storing e.wav's new version
    (music / "b.flac").unlink()
    assert index("removed") == -9  # b.flac out of the database, still in Milvus
    apart = look(music / "a.wav")
    assert set(apart["held"]["tracks"]) - set(apart["stored"]["tracks"])

    assert index() == 0
    mended = look(music / "sub" / "e.wav")
    assert mended["held"] == mended["stored"] and mended["problems"] == []
    assert mended["first"] == "e.wav"  # its new audio, not the vectors of the old
    assert len(mended["stored"]["tracks"]) == 6  # a, c, d, e, f and new; b is gone


def test_a_writer_that_did_not_finish_is_reported_until_the_next_writer_mends(twins):
    import socket
    import subprocess
    import sys

    _, milvus, music = twins
    ended = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True)
    here = socket.gethostname()
    records = {
        "milvus_writer:ended": json.dumps({"host": here, "pid": int(ended.stdout)}),
        "milvus_writer:elsewhere": json.dumps({"host": here + "-other", "pid": 1}),
        "milvus_writer:parent": json.dumps({"host": here, "pid": os.getppid()}),  # at work
    }
    milvus.store.update_meta(records)
    assert milvus.indexes.unfinished() == ["milvus_writer:ended"]
    assert any("stopped without finishing" in problem for problem in milvus.verify())
    milvus.index_paths([music])  # a writer alone (SQLite): no other writer can be at work
    assert milvus.store.meta_keys("milvus_writer:") == {} and milvus.verify() == []


def test_milvus_lite_searches_exactly_until_a_collection_outgrows_it(tmp_path, tiny_model, music, monkeypatch):
    import mertsearch.storage.milvus as milvus_module

    monkeypatch.setattr(milvus_module, "FLAT_LIMIT", 12)
    with Catalog.create(tmp_path / "cat", model=str(tiny_model), vector_store=f"milvus://{tmp_path / 'v.db'}") as cat:
        for name in ("a.wav", "b.flac"):
            cat.index_paths([music / name])
        windows = cat.store.count("windows")
        assert windows < 12 and cat.indexes.windows.factory == "milvus FLAT"
        cat.index_paths([music])
        windows = cat.store.count("windows")
        assert windows >= 12, windows  # the windows outgrew exact search at the ingest's save
        lists = max(1, windows // 39)
        assert cat.indexes.windows.factory == f"milvus IVF_SQ8 nlist={lists} nprobe=16"
        assert cat.indexes.tracks.factory == "milvus FLAT"
        assert _paths(cat.search(music / "d.ogg", k=1)) == ["d.ogg"] and cat.verify() == []


def test_the_url_names_the_index_and_its_parameters(tmp_path, tiny_model, music):
    store = f"milvus://{tmp_path / 'v.db'}?index=hnsw&M=8&efConstruction=64&ef=32"
    with Catalog.create(tmp_path / "cat", model=str(tiny_model), vector_store=store) as cat:
        cat.index_paths([music])
        assert cat.indexes.windows.factory == "milvus HNSW M=8 efConstruction=64 ef=32"
        assert _paths(cat.search(music / "d.ogg", k=1)) == ["d.ogg"]
    with pytest.raises(InvalidArgumentError, match="takes a number"):
        Catalog.create(tmp_path / "other", model=str(tiny_model), vector_store=f"{store}&nprobe=many")


def test_a_reader_of_a_new_catalog_finds_nothing_until_a_writer_fills_it(tmp_path, tiny_model, music):
    store = f"milvus://{tmp_path / 'v.db'}"
    Catalog.create(tmp_path / "cat", model=str(tiny_model), vector_store=store).close()
    with Catalog.open(tmp_path / "cat") as reader, Catalog.open(tmp_path / "cat") as writer:
        assert reader.search(music / "a.wav", k=3) == [] and reader.verify() == []
        writer.index_paths([music])
        assert _paths(reader.search(music / "a.wav", k=1)) == ["a.wav"] and reader.verify() == []


def test_a_catalog_moves_its_vectors_to_milvus_and_back(tmp_path, tiny_model, music):
    from pymilvus import MilvusClient

    from mertsearch.storage.indexes import Indexes

    lite = tmp_path / "v.db"
    with Catalog.create(tmp_path / "cat", model=str(tiny_model)) as cat:
        cat.index_paths([music])
        expected = _paths(cat.search(music / "c.mp3", k=6))
        with pytest.raises(InvalidArgumentError, match="a vector store is"):
            cat.rebuild_index(vector_store="redis://x")
        assert cat.manifest.index.vector_store is None and _paths(cat.search(music / "c.mp3", k=6)) == expected

        cat.rebuild_index(vector_store=f"milvus://{lite}")
        prefix = cat.manifest.index.collections
        assert json.loads((cat.directory / "manifest.json").read_text())["index"]["vector_store"] == f"milvus://{lite}"
        assert not list(cat.directory.rglob("*.faiss")) and cat.verify() == []
        assert _paths(cat.search(music / "c.mp3", k=6)) == expected
        (music / "a.wav").unlink()
        cat.index_paths([music])  # writes go to Milvus now
        assert "a.wav" not in _paths(cat.search(music / "c.mp3", k=6)) and cat.verify() == []

        cat.rebuild_index(vector_store="faiss")
        assert cat.manifest.index.vector_store is None and list(cat.directory.rglob("*.faiss"))
        assert not [name for name in MilvusClient(str(lite)).list_collections() if name.startswith(prefix)]
        assert _paths(cat.search(music / "c.mp3", k=6)) == [name for name in expected if name != "a.wav"]
    with Catalog.open(tmp_path / "cat") as again:
        assert isinstance(again.indexes, Indexes) and again.verify() == []


def test_readers_search_whole_collections_while_a_rebuild_fills_new_ones(tmp_path, tiny_model, music, monkeypatch):
    """A rebuild fills a new generation of the collections while a running reader, and one opened
    meanwhile, go on searching the one in use, whole; both follow the switch at their next search,
    and the generation before is dropped, under a search already handed out too."""
    store = f"milvus://{tmp_path / 'vectors.db'}"
    with Catalog.create(tmp_path / "cat", model=str(tiny_model), vector_store=store) as writer:
        writer.index_paths([music])
        running = Catalog.open(tmp_path / "cat")

        def answers(reader) -> dict:
            return {mode: _paths(reader.search(music / "c.mp3", k=6, mode=mode)) for mode in ("segments", "tracks")}

        expected, seen = answers(running), []
        windows = running.indexes.windows  # a collection handed out before the rebuild
        queries = running.transform(running.store.sample_vectors("windows", 3))
        fill = writer.store.window_vectors

        def midway(*args, **kwargs):  # the new tracks collection is filled, its windows not yet
            with Catalog.open(tmp_path / "cat") as opened:
                seen.extend([answers(running), answers(opened)])
            yield from fill(*args, **kwargs)

        monkeypatch.setattr(writer.store, "window_vectors", midway)
        before = set(writer.indexes.names.values())
        writer.rebuild_index()
        assert seen == [expected, expected]
        after = set(writer.indexes.names.values())
        assert not after & before and after <= set(writer.indexes.client.list_collections())
        assert not before & set(writer.indexes.client.list_collections())
        assert answers(running) == expected and set(running.indexes.names.values()) == after
        assert windows.search(queries, 4)[1].tolist() == running.indexes.windows.search(queries, 4)[1].tolist()
        assert writer.verify() == [] and running.verify() == []
        running.close()


def test_a_move_drops_the_old_store_only_once_the_manifest_names_the_new(tmp_path, tiny_model, music, monkeypatch):
    """The manifest never names a dropped store: a move that stops before writing it (here its
    write fails) leaves the old store whole, and the catalog on it."""
    import mertsearch.catalog.maintenance as maintenance
    from mertsearch.storage.indexes import Indexes

    def unwritable(*args, **kwargs):
        raise OSError("no space left on device")

    lite = f"milvus://{tmp_path / 'v.db'}"
    with Catalog.create(tmp_path / "cat", model=str(tiny_model)) as cat:
        cat.index_paths([music])
        expected = _paths(cat.search(music / "c.mp3", k=6))
        files = sorted(cat.directory.rglob("*.faiss"))
        with monkeypatch.context() as patch:
            patch.setattr(maintenance, "write_manifest", unwritable)
            with pytest.raises(OSError, match="no space"):
                cat.rebuild_index(vector_store=lite)
        assert sorted(cat.directory.rglob("*.faiss")) == files and files
        assert cat.manifest.index.vector_store is None and _paths(cat.search(music / "c.mp3", k=6)) == expected

        cat.rebuild_index(vector_store=lite)
        collections = set(cat.indexes.names.values())
        with monkeypatch.context() as patch:
            patch.setattr(maintenance, "write_manifest", unwritable)
            with pytest.raises(OSError, match="no space"):
                cat.rebuild_index(vector_store="faiss")
        assert collections <= set(cat.indexes.client.list_collections())
        assert cat.manifest.index.vector_store == lite and _paths(cat.search(music / "c.mp3", k=6)) == expected
        assert cat.verify() == []
    with Catalog.open(tmp_path / "cat") as again:
        assert not isinstance(again.indexes, Indexes) and again.verify() == []


@pytest.mark.slow
def test_a_writer_and_a_server_in_two_processes_share_one_milvus_server(tmp_path, tiny_model, music, milvus_url):
    """What Milvus Lite cannot do (one process a file): `mertsearch serve` answers from the
    collections while `mertsearch index`, another process, changes them."""
    import subprocess
    import sys

    import httpx

    from tests.servers import free_port

    catalog = tmp_path / "cat"
    cli("index", music, "--catalog", catalog, "--model", tiny_model, "--vector-store", milvus_url)
    port = free_port()
    command = [sys.executable, "-m", "mertsearch.cli", "serve", "--catalog", str(catalog), "--port", str(port)]
    server = subprocess.Popen([*command, "--model", str(tiny_model)], stderr=subprocess.PIPE, text=True)
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 120
        while True:
            try:
                httpx.get(f"{url}/health", timeout=2)
                break
            except httpx.TransportError:
                assert server.poll() is None and time.monotonic() < deadline, server.stderr.read()[-2000:]
                time.sleep(0.2)
        with Catalog.open(catalog) as cat:
            seed = cat.track_id(music / "a.wav")

        def similar() -> list[str]:
            answer = httpx.get(f"{url}/tracks/{seed}/similar", params={"k": 10}, timeout=60)
            assert answer.status_code == 200, answer.text
            return sorted(r["path"].split("/")[-1] for r in answer.json()["results"])

        assert similar() == ["b.flac", "c.mp3", "d.ogg", "e.wav", "f.flac"]
        (music / "c.mp3").unlink()
        write_audio(music / "sub" / "g.wav", tone_track(9, 10, SAMPLE_RATE), SAMPLE_RATE)
        cli("index", music, "--catalog", catalog)  # while the server runs, from another process
        assert similar() == ["b.flac", "d.ogg", "e.wav", "f.flac", "g.wav"]
        cli("verify", "--catalog", catalog)
    finally:
        server.terminate()
        server.wait(timeout=60)
