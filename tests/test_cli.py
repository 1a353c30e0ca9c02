"""The command line through typer's CliRunner: JSON documents, messages and exit codes."""

import json

import pytest

from tests.helpers import SAMPLE_RATE, cli, tone_track, write_audio


def run(*args: str, code: int = 0):
    return cli(*args, code=code)


@pytest.fixture
def catalog(tmp_path, tiny_model, music):
    (music / "junk.ogg").write_bytes(b"OggS but not really" * 10)
    cat = tmp_path / "cat"
    document = json.loads(run("index", music, "--catalog", cat, "--model", tiny_model, "--layer", 3, "--json").stdout)
    assert document["added"] == 6 and document["tracks"] == 6
    assert [f["path"].endswith("junk.ogg") for f in document["failed"]] == [True]
    return cat


def test_index_json_and_rerun(catalog, music):
    again = json.loads(run("index", music, "--catalog", catalog, "--json").stdout)
    assert (again["added"], again["updated"], again["unchanged"], again["skipped_failed"]) == (0, 0, 6, 1)


def test_index_human_output_reports_counts_and_failures(tmp_path, tiny_model, music):
    (music / "[red] junk.mp3").write_bytes(b"not audio" * 100)  # brackets are not console markup
    result = run("index", music, "--catalog", tmp_path / "c2", "--model", tiny_model, "--layer", 2)
    assert "6 added" in result.stdout and "1 failed" in result.stdout
    assert "[red] junk.mp3: cannot decode audio" in result.output
    assert "junk.mp3" in result.stderr


def test_search_json(catalog, tmp_path):
    clip = write_audio(tmp_path / "clip.mp3", tone_track(4, 21, SAMPLE_RATE)[:, : 9 * SAMPLE_RATE], SAMPLE_RATE)
    document = json.loads(run("search", clip, "--catalog", catalog, "-k", 3, "--json").stdout)
    results = document["results"]
    assert len(results) == 3 and results[0]["path"].endswith("e.wav")
    assert {"track_id", "path", "title", "artist", "album", "score", "match", "query", "offset"} <= set(results[0])
    assert set(results[0]["match"]) == set(results[0]["query"]) == {"start", "end"}
    assert all(0 <= r["offset"] <= r["duration"] for r in results)
    part = json.loads(run("search", clip, "--catalog", catalog, "--start", 1, "--end", 6, "--json").stdout)
    assert part["results"][0]["path"].endswith("e.wav")


def test_search_table(catalog, tmp_path):
    clip = write_audio(tmp_path / "clip.wav", tone_track(1, 5, SAMPLE_RATE), SAMPLE_RATE)
    assert "b.flac" in run("search", clip, "--catalog", catalog, "-k", 2).stdout


def test_similar_by_id_and_by_path(catalog, music):
    by_id = json.loads(run("similar", 1, "--catalog", catalog, "--json").stdout)["results"]
    assert len(by_id) == 5 and 1 not in [r["track_id"] for r in by_id]
    assert all(r["offset"] is None for r in by_id)  # no clip to place
    by_path = json.loads(run("similar", music / "a.wav", "--catalog", catalog, "--json").stdout)["results"]
    assert [r["track_id"] for r in by_path] == [r["track_id"] for r in by_id]


def test_embed_json(tiny_model, music):
    document = json.loads(run("embed", music / "a.wav", "--model", tiny_model, "--layer", 2, "--json").stdout)
    assert (document["layer"], document["dim"], len(document["vector"])) == (2, 32, 32)
    assert abs(sum(v * v for v in document["vector"]) - 1) < 1e-4


def test_info_json(catalog):
    document = json.loads(run("info", "--catalog", catalog, "--json").stdout)
    assert (document["tracks"], document["failed"], document["layer"], document["dim"]) == (6, 1, 3, 32)
    assert document["index"]["factory"] == "auto" and document["database_bytes"] > 0
    assert document["index"]["tracks"]["kind"] == "IDMap2,Flat" and document["index"]["tracks"]["vectors"] == 6
    assert document["index"]["windows"]["vectors"] == document["windows"] and document["index"]["windows"]["bytes"] > 0
    assert {"model", "revision", "weights_sha256"} <= set(document)


def test_failures_lists_reasons(catalog):
    rows = json.loads(run("failures", "--catalog", catalog, "--json").stdout)["failed"]
    assert len(rows) == 1 and "cannot decode" in rows[0]["reason"]


@pytest.mark.parametrize(
    "args,message",
    [
        (["search", "x.wav", "--catalog", "{tmp}/none"], "no catalog at"),
        (["similar", "999", "--catalog", "{cat}"], "no track with id 999"),
        (["search", "{tmp}/missing.wav", "--catalog", "{cat}"], "no such file"),
        (["index", "{tmp}/nowhere", "--catalog", "{cat}"], "no such file or folder"),
        (["index", "{tmp}", "--catalog", "{cat}", "--layer", "2"], "encoder.layers: [3] in the catalog, [2] asked"),
        (["embed", "x.wav", "--model", "{tmp}/no-model-here/x"], "unknown model"),
    ],
)
def test_errors_are_one_clear_line_and_a_nonzero_exit(catalog, tmp_path, args, message):
    args = [a.format(tmp=tmp_path, cat=catalog) for a in args]
    result = run(*args, code=1)
    assert message in result.stderr
    assert "Traceback" not in result.output and len(result.stderr.strip().splitlines()) == 1


def test_wrong_argument_is_a_usage_error(catalog):
    result = run("search", "x.wav", "--catalog", catalog, "-k", "0", code=2)
    assert "-k" in result.output


def test_help_and_version():
    assert "index" in run("--help").stdout
    assert "mertsearch" in run("--version").stdout


def test_commands_without_a_model_do_not_load_torch():
    """`info` and `similar` start in about a second because torch and transformers stay unloaded."""
    import subprocess
    import sys

    code = (
        "import sys, mertsearch.cli, mertsearch.catalog; print('torch' in sys.modules, 'transformers' in sys.modules)"
    )
    assert subprocess.check_output([sys.executable, "-c", code], text=True).split() == ["False", "False"]


def test_models_lists_all_five():
    models = json.loads(run("models", "--json").stdout)["models"]
    assert [m["name"] for m in models] == ["mert-v1-95m", "mert-v1-330m", "mert-v0", "mert-v0-public", "music2vec-v1"]
    assert {m["sample_rate"] for m in models} == {24000, 16000}
    assert "mert-v1-95m" in run("models").stdout


def test_models_download_fetches_into_the_cache(monkeypatch, tiny_model):
    import huggingface_hub

    calls = []

    def fake_download(repo_id, *, revision, allow_patterns, local_files_only=False):
        calls.append(local_files_only)
        if local_files_only:
            raise FileNotFoundError("not cached yet")
        return str(tiny_model)

    monkeypatch.setattr(huggingface_hub, "snapshot_download", fake_download)
    monkeypatch.setattr("socket.getaddrinfo", lambda *args: [])
    document = json.loads(run("models", "download", "mert-v1-95m", "--json").stdout)
    assert document["repo_id"] == "m-a-p/MERT-v1-95M" and document["directory"] == str(tiny_model)
    assert calls == [True, False]


def test_embed_uses_the_models_default_layer(tiny_model, music):
    document = json.loads(run("embed", music / "a.wav", "--model", tiny_model, "--json").stdout)
    assert document["layer"] == 4  # a 4-layer model that is not in the registry: its last layer
