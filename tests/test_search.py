"""Segment search, filters, diversity, several seeds, score floor, playlists."""

import numpy as np
import pytest

from mertsearch import InvalidArgumentError
from mertsearch.search.playlist import write_m3u
from mertsearch.storage.filters import Filters
from tests.helpers import SAMPLE_RATE, melody_track, tone_track

SR = SAMPLE_RATE


def test_an_excerpt_off_the_window_grid_is_found_with_its_start_within_one_hop(tagged_catalog):
    cat, music = tagged_catalog
    source = melody_track(100 + 9, 21, SR)  # Cat's 21 s track
    for offset in (0.4, 1.7, 3.3, 4.6, 6.2, 7.9, 9.4, 11.1, 12.6):
        clip = (source[:, int(offset * SR) : int((offset + 8) * SR)], SR)
        best = cat.search(clip, k=3)[0]
        assert best.path.endswith("09.flac")
        assert abs(best.offset - offset) <= 2.5, (offset, best)  # one hop


def test_tracks_mode_compares_whole_tracks(tagged_catalog):
    cat, music = tagged_catalog
    results = cat.search(music / "Bob" / "05.flac", k=5, mode="tracks")
    assert results[0].path.endswith("05.flac") and results[0].score == pytest.approx(1.0, abs=1e-4)
    assert len({r.track_id for r in results}) == 5
    with pytest.raises(InvalidArgumentError, match="mode must be one of"):
        cat.search(music / "Bob" / "05.flac", mode="nearest")


@pytest.mark.parametrize("mode", ["segments", "tracks"])
def test_filters_give_k_results_whenever_k_tracks_match(tagged_catalog, mode):
    cat, music = tagged_catalog
    query = music / "Ann" / "00.flac"
    only_cat = cat.search(query, k=3, mode=mode, filters=Filters(artist=("cat",)))
    assert [r.artist for r in only_cat] == ["Cat"] * 3
    nineties = cat.search(query, k=10, mode=mode, filters=Filters.parse([], min_year=1990, max_year=1999))
    assert len(nineties) == 4 and all(r.artist == "Ann" for r in nineties)
    by_path = cat.search(query, k=10, mode=mode, filters=Filters.parse([f"path={music / 'Dan'}"]))
    assert sorted(r.path[-7:] for r in by_path) == ["10.flac", "11.flac"]
    long_ones = cat.search(query, k=10, mode=mode, filters=Filters(min_duration=20.5))
    assert {round(r.duration) for r in long_ones} == {21, 22, 23}
    assert cat.search(query, k=5, mode=mode, filters=Filters(genre=("polka",))) == []


def test_filter_expressions_are_checked():
    assert Filters.parse(["artist=Ann", "artist=Bob", "year=1995"]).artist == ("Ann", "Bob")
    with pytest.raises(InvalidArgumentError, match="unknown filter"):
        Filters.parse(["colour=red"])
    with pytest.raises(InvalidArgumentError, match="key=value"):
        Filters.parse(["artist"])


def test_diversity_caps_results_per_artist_and_album(tagged_catalog):
    cat, music = tagged_catalog
    results = cat.search(music / "Ann" / "00.flac", k=4, per_artist=1)
    assert len(results) == 4 and len({r.artist for r in results}) == 4
    per_album = cat.similar(1, k=10, per_album=1)  # six albums in all
    albums = [(r.artist, r.album) for r in per_album]
    assert len(per_album) == 6 and len(albums) == len(set(albums))


def test_several_seeds_and_seed_artist_exclusion(tagged_catalog):
    cat, music = tagged_catalog
    both = cat.similar([1, 8], k=5)
    assert {1, 8}.isdisjoint(r.track_id for r in both) and len(both) == 5
    others = cat.similar(1, k=20, exclude_seed_artist=True)
    assert others and all(r.artist != "Ann" for r in others) and len(others) == 8


def test_score_floor(tagged_catalog):
    cat, music = tagged_catalog
    everything = cat.similar(1, k=11)
    floor = everything[4].score
    kept = cat.similar(1, k=11, min_score=floor)
    assert [r.track_id for r in kept] == [r.track_id for r in everything[:5]]


def test_results_export_as_m3u(tagged_catalog, tmp_path):
    cat, music = tagged_catalog
    results = cat.similar(1, k=3)
    playlist = write_m3u(results, tmp_path / "list.m3u").read_text().splitlines()
    assert playlist[0] == "#EXTM3U" and len(playlist) == 7
    assert playlist[1].startswith(f"#EXTINF:{round(results[0].duration)},{results[0].artist} - ")
    assert playlist[2] == results[0].path


def test_query_ranges_stay_within_the_query(tagged_catalog):
    cat, music = tagged_catalog
    for result in cat.search((tone_track(5, 9.5, SR), SR), k=5):
        assert 0 <= result.query.start < result.query.end <= 9.5 + 1e-6
        assert 0 <= result.match.start < result.match.end <= result.duration + 1e-6
    assert np.isfinite([r.score for r in cat.search((tone_track(5, 9.5, SR), SR), k=5)]).all()
