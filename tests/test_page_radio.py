"""The web page's radio list in headless Chromium: each click adds the tracks to play next, never one
already listed or shown among the results."""

import pytest

from mertsearch import Catalog
from mertsearch.api.app import Settings
from tests.helpers import tone_track, write_audio

from .servers import running
from .test_page import CHROMIUM, FLAGS


@pytest.mark.slow
def test_radio_adds_the_next_tracks_without_repeats(tmp_path, tiny_model, music_source):
    from playwright.sync_api import expect, sync_playwright

    expect.set_options(timeout=30_000)
    with Catalog.create(tmp_path / "cat", model=str(tiny_model), layer=3) as cat:
        cat.index_paths([music_source])  # six tracks
    clip = write_audio(tmp_path / "clip.wav", tone_track(3, 8, 44100), 44100)
    with running(Settings(catalog=tmp_path / "cat")) as url, sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, headless=True, args=FLAGS)
        page = browser.new_page()
        page.goto(url + "/")
        page.set_input_files("#file", str(clip))
        page.fill("#k", "2")
        page.click("#search")
        results = page.locator("#results li.result")
        expect(results).to_have_count(2)
        shown = [item.get_attribute("data-track-id") for item in results.all()]

        radio = page.locator("#radio li.result")
        results.first.locator(".radio").click()
        expect(radio).to_have_count(3)  # the track itself, then two more
        radio.last.locator(".radio").click()
        expect(radio).to_have_count(5)  # the six tracks but the other one shown
        listed = [item.get_attribute("data-track-id") for item in radio.all()]
        assert len(set(listed)) == 5 and listed[0] == shown[0] and shown[1] not in listed
        radio.last.locator(".radio").click()
        expect(page.locator("#status")).to_contain_text("Nothing left to add")
        expect(radio).to_have_count(5)
        browser.close()
