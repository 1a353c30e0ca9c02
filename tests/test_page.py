"""The web page in headless Chromium (Debian's package, driven by Playwright): a real upload and clicks."""

import re
import shutil
from pathlib import Path

import pytest

from mertsearch import Catalog
from mertsearch.api.app import Settings
from tests.helpers import tone_track, write_audio

from .servers import running

CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
ARTIFACTS = Path(__file__).parent / "artifacts"
# Chromium's own network features are refused by a closed network; these keep it quiet and fast.
FLAGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--autoplay-policy=no-user-gesture-required",
]


@pytest.mark.slow
def test_upload_search_play_and_more_like_this(tmp_path, tiny_model, music_source):
    from playwright.sync_api import expect, sync_playwright

    expect.set_options(timeout=30_000)  # a busy machine's first search can take longer than 5 s
    with Catalog.create(tmp_path / "cat", model=str(tiny_model), layer=3) as cat:
        cat.index_paths([music_source])
    clip = write_audio(tmp_path / "my clip.wav", tone_track(3, 8, 44100), 44100)
    ARTIFACTS.mkdir(exist_ok=True)
    token = "page-token"
    with running(Settings(catalog=tmp_path / "cat", token=token)) as url, sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, headless=True, args=FLAGS)
        page = browser.new_page(viewport={"width": 1100, "height": 900})
        page.goto(url + "/")
        expect(page.get_by_role("heading")).to_contain_text("mertsearch")
        page.fill("#token", token)
        page.set_input_files("#file", str(clip))
        page.fill("#k", "4")
        page.fill("#end", "6")
        page.click("#search")
        results = page.locator("li.result")
        expect(results).to_have_count(4)
        expect(page.locator("#status")).to_contain_text("Tracks like my clip.wav")
        first = results.first
        expect(first.locator(".title")).to_contain_text("d.ogg")  # the clip is the start of d.ogg
        expect(first.locator(".meta")).to_contain_text("matches")
        # It plays from where the clip starts in the track, as the result says.
        starts_at = re.search(r"clip starts at (\d+:\d\d\.\d)", first.locator(".meta").inner_text()).group(1)
        expect(first.locator(".play")).to_have_text(f"▶ play from {starts_at}")
        expect(first.locator(".similarity")).to_have_text("100% similar")  # six tracks: calibrated
        seed = first.get_attribute("data-track-id")

        first.locator(".play").click()
        player = page.locator("#player")
        expect(player).to_have_attribute("data-track-id", seed)
        src = player.get_attribute("src")
        # A signed URL for this track: the token itself never goes in a URL.
        assert f"tracks/{seed}/audio?" in src and "signature=" in src and token not in src
        page.wait_for_function("document.getElementById('player').readyState >= 1", timeout=15000)

        first.locator(".more").click()
        expect(page.locator("#status")).to_contain_text("More like")
        expect(results).to_have_count(4)
        assert seed not in [item.get_attribute("data-track-id") for item in results.all()]
        page.screenshot(path=str(ARTIFACTS / "page.png"), full_page=True)

        page.fill("#min-similarity", "0.99")  # the clip's own track only
        page.click("#search")
        expect(results).to_have_count(1)
        expect(results.first.locator(".title")).to_contain_text("d.ogg")
        browser.close()
    assert (ARTIFACTS / "page.png").stat().st_size > 10_000
