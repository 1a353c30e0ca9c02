"""GET /tracks/{id}/audio sends only the file that was indexed: not what a link swapped into its
place leads to, not a file changed since, not a pipe."""

import os
import shutil

import httpx
import pytest

from mertsearch import Catalog
from mertsearch.api.app import Settings
from mertsearch.api.files import IndexedFolders, top_folders

from .servers import running

SECRET = b"-----BEGIN PRIVATE KEY----- do not send this"


@pytest.fixture(scope="module")
def served(tmp_path_factory, tiny_model, music_source):
    """(server URL, music folder, private folder); the tests change one track's file each."""
    root = tmp_path_factory.mktemp("files")
    music = shutil.copytree(music_source, root / "music")
    with Catalog.create(root / "cat", model=str(tiny_model), layer=3) as cat:
        cat.index_paths([music], decoders=0)
        ids = {os.path.relpath(track["path"], music): track["track_id"] for track in cat.find_tracks()["tracks"]}
    (root / "private").mkdir()
    with running(Settings(catalog=root / "cat")) as url:
        yield url, music, root / "private", ids


def _secret_like(path, private):
    """A private file of the same size and modification time as the indexed file at ``path``."""
    info = os.stat(path)
    secret = private / os.path.basename(path)
    secret.write_bytes(SECRET.ljust(info.st_size, b"!"))
    os.utime(secret, ns=(info.st_atime_ns, info.st_mtime_ns))
    return secret


def test_a_file_swapped_for_a_link_to_a_secret_is_refused(served):
    url, music, private, ids = served
    secret = _secret_like(music / "a.wav", private)
    (music / "a.wav").unlink()
    (music / "a.wav").symlink_to(secret)
    response = httpx.get(f"{url}/tracks/{ids['a.wav']}/audio")
    assert response.status_code == 409 and SECRET not in response.content
    assert "outside the catalog's indexed folders" in response.json()["message"]


def test_a_folder_swapped_for_a_link_to_a_secret_folder_is_refused(served):
    url, music, private, ids = served
    inner = private / "sub"
    inner.mkdir()
    _secret_like(music / "sub" / "e.wav", inner)
    (music / "sub").rename(music.parent / "sub-moved")
    (music / "sub").symlink_to(inner)
    try:
        response = httpx.get(f"{url}/tracks/{ids['sub/e.wav']}/audio")
    finally:
        (music / "sub").unlink()
        (music.parent / "sub-moved").rename(music / "sub")
    assert response.status_code == 409 and SECRET not in response.content


def test_a_file_changed_since_it_was_indexed_is_refused(served):
    url, music, _private, ids = served
    with open(music / "b.flac", "ab") as file:
        file.write(b"more")
    response = httpx.get(f"{url}/tracks/{ids['b.flac']}/audio")
    assert response.status_code == 409 and "changed since it was indexed" in response.json()["message"]


def test_a_pipe_in_the_files_place_is_refused_without_waiting(served):
    url, music, _private, ids = served
    (music / "d.ogg").unlink()
    os.mkfifo(music / "d.ogg")
    response = httpx.get(f"{url}/tracks/{ids['d.ogg']}/audio", timeout=10)
    assert response.status_code == 409 and "not a regular file" in response.json()["message"]


def test_a_file_gone_is_404(served):
    url, music, _private, ids = served
    (music / "c.mp3").unlink()
    response = httpx.get(f"{url}/tracks/{ids['c.mp3']}/audio")
    assert response.status_code == 404 and "gone from disk" in response.json()["message"]


def test_an_intact_file_is_served_with_ranges(served):
    url, music, _private, ids = served
    expected = (music / "sub" / "f.flac").read_bytes()
    track = ids["sub/f.flac"]
    whole = httpx.get(f"{url}/tracks/{track}/audio")
    assert whole.status_code == 200 and whole.content == expected
    part = httpx.get(f"{url}/tracks/{track}/audio", headers={"Range": "bytes=5-9, 20-24"})
    assert part.status_code == 206 and expected[5:10] in part.content and expected[20:25] in part.content


def test_folders_are_the_top_ones_and_resolved_once(tmp_path):
    assert top_folders(["/m/a/1.flac", "/m/a/b/2.flac", "/m/c/3.flac", "/n/4.flac"]) == ["/m/a", "/m/c", "/n"]
    real = tmp_path / "real"
    (real / "album").mkdir(parents=True)
    (tmp_path / "music").symlink_to(real)  # a library behind a link from the start is fine
    folders = IndexedFolders([str(tmp_path / "music" / "album" / "x.flac")])
    assert folders.real_root_of(str(tmp_path / "music" / "album" / "x.flac")) == str(real / "album")
    assert folders.real_root_of(str(tmp_path / "elsewhere" / "x.flac")) is None
