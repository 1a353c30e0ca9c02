"""`mertsearch eval`: excerpt identification under degradations, label retrieval, score spread; seeded."""

import json

import pytest

from mertsearch.search.excerpts import DEGRADATIONS

from .test_search import catalog  # noqa: F401 - the tagged 12-track catalog fixture


@pytest.mark.slow
def test_eval_report_is_seeded_complete_and_finds_clean_excerpts(catalog, tmp_path):  # noqa: F811
    cat, _ = catalog
    first = cat.evaluate(excerpts=4, seconds=8, seed=3)
    again = cat.evaluate(excerpts=4, seconds=8, seed=3)
    assert first == again  # same seed, same numbers
    rows = first["identification"]["degradations"]
    assert list(rows) == list(DEGRADATIONS) and first["identification"]["excerpts"] == 4
    assert rows["clean"]["recall_at_1"] >= 0.5 and rows["clean"]["median_position_error_s"] <= 2.5
    assert rows["clean"]["recall_at_10"] >= rows["clean"]["recall_at_1"]
    assert rows["noise 5 dB SNR"]["recall_at_1"] <= rows["clean"]["recall_at_1"]
    assert first["labels"]["labels"] == 4 and first["labels"]["layers"]  # folder names: 4 artists
    assert first["scores"]["true_matches"]["count"] >= 2
    assert cat.evaluate(excerpts=4, seconds=8, seed=4, baseline=False) != first
    reference = first["baseline"]
    assert reference["model"] == "spectral" and list(reference["degradations"]) == list(DEGRADATIONS)
    assert reference["degradations"]["clean"]["recall_at_1"] >= 0.75 and reference["labels"]["layers"]

    from mertsearch.search.report import write_report

    files = write_report(first, tmp_path / "report")
    assert json.loads((tmp_path / "report" / "eval.json").read_text())["seed"] == 3
    markdown = (tmp_path / "report" / "eval.md").read_text()
    assert "| mp3 64 kbit/s |" in markdown and "![scores](eval-scores.png)" in markdown
    assert "spectral baseline" in markdown
    assert all((tmp_path / "report" / name).stat().st_size > 1000 for name in ("eval-scores.png", "eval-layers.png"))
    assert set(files) == {"json", "markdown", "scores", "layers"}
