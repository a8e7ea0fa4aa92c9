"""Manifests that would exhaust the machine or escape their place: refused in one line, fast."""

from __future__ import annotations

import time

import pytest

from nst_batch.tasks.errors import InputError, ManifestError
from nst_batch.tasks.planning.manifest import MAX_MANIFEST_BYTES, parse_manifest
from nst_batch.tasks.planning.plan import expand

BASE = "styles: {a: a.png}\ncontents: [x.png]\n"


def _problems(text: str) -> list[str]:
    with pytest.raises(ManifestError) as caught:
        parse_manifest(text, "m.yaml")
    return [str(p) for p in caught.value.problems]


def test_a_yaml_alias_bomb_is_refused_before_it_expands():
    levels = ['a: &a ["lol","lol","lol","lol","lol","lol","lol","lol","lol"]']
    levels += [f"{c}: &{c} [{','.join(['*' + p] * 9)}]" for p, c in zip("abcdefgh", "bcdefghi", strict=True)]
    began = time.monotonic()
    problems = _problems(BASE + "\n".join(levels) + "\n")
    assert time.monotonic() - began < 10  # was 186 s and 3.9 GB, then a MemoryError traceback
    assert problems == [
        "(top): the manifest expands to over 1,000,000 YAML values (aliases *name repeat what they name): "
        "a manifest that large is refused"
    ]


def test_a_few_aliases_are_fine():
    manifest = parse_manifest("styles: {a: &p a.png, b: *p}\ncontents: [x.png]\n", "m.yaml")
    assert manifest.styles == {"a": "a.png", "b": "a.png"}


def test_an_oversized_manifest_is_refused_by_its_size():
    problems = _problems(BASE + "#" * (MAX_MANIFEST_BYTES + 1) + "\n")
    assert len(problems) == 1 and "over the limit of 16,777,216" in problems[0]


def test_an_integer_of_thousands_of_digits_is_one_line():
    problems = _problems(BASE + "defaults: {iterations: " + "9" * 5000 + "}\n")
    assert problems == ["(top): a value cannot be read: a number has more than 4,300 digits"]


@pytest.mark.parametrize(
    "text, field",
    [
        ("defaults: {iterations: true}", "defaults.iterations"),
        ("defaults: {size: [true, 64]}", "defaults.size"),
        ("defaults: {style_weight: false}", "defaults.style_weight"),
        ("quality: true", "quality"),
        ("max_pixels: true", "max_pixels"),
    ],
)
def test_booleans_are_refused_where_numbers_belong(text, field):
    problems = _problems(BASE + text + "\n")
    assert len(problems) == 1 and problems[0].startswith(field), problems


def test_booleans_stay_fine_where_booleans_belong():
    assert (
        parse_manifest(BASE + "defaults: {preserve_color: true}\n", "m.yaml").defaults.given()["preserve_color"] is True
    )


def test_a_long_sweep_list_is_refused_quickly_and_quoted_briefly():
    values = ",".join(str(i) for i in range(20000))
    began = time.monotonic()
    problems = _problems(BASE + f"defaults: {{sweep: {{seed: [{values}]}}}}\n")
    assert time.monotonic() - began < 10
    assert problems == [
        "defaults.sweep (line 3): sweep: seed lists 20,000 values, over the limit of 100 points per pair"
    ]


def test_messages_quote_a_bounded_excerpt_of_a_value():
    problems = _problems(BASE + "defaults: {pooling: " + "x" * 100_000 + "}\n")
    assert len(problems) == 1 and len(problems[0]) < 1000


@pytest.mark.parametrize("path", ["../../elsewhere/out", "../../../x.png"])
def test_a_relative_path_above_an_s3_manifests_bucket_is_an_error(path):
    manifest = parse_manifest(f"output: {path}\nstyles: {{a: a.png}}\ncontents: [x.png]\n", "s3://bucket/in/m.yaml")
    with pytest.raises(ManifestError) as caught:
        expand(manifest, "s3://bucket/in/m.yaml")
    assert [p.path for p in caught.value.problems] == ["output"]
    assert "climbs above the bucket of s3://bucket/in/" in str(caught.value)


def test_a_relative_path_inside_the_bucket_normalises_like_a_local_one(monkeypatch):
    from nst_batch.tasks.planning import plan

    monkeypatch.setattr(plan, "_expand_contents", lambda uri, *a: [uri])
    manifest = parse_manifest("output: ../out\nstyles: {a: ./s/../a.png}\ncontents: [x.png]\n", "s3://bucket/in/m.yaml")
    expanded = expand(manifest, "s3://bucket/in/m.yaml")
    assert expanded.settings.output_root == "s3://bucket/out" and expanded.styles == {"a": "s3://bucket/in/a.png"}


@pytest.mark.parametrize("value", ["abc", "-3", "0", "100000"])
def test_dask_workers_settings_are_range_checked_in_one_line(value, monkeypatch):
    from nst_batch.tasks.running.runners import make_task_runner

    monkeypatch.setenv("NST_DASK_WORKERS", value)
    with pytest.raises(InputError, match=r"NST_DASK_WORKERS must be a whole number 1\.\.256"):
        make_task_runner("dask")


def test_cli_refuses_a_bad_dask_workers_count(capsys):
    from nst_batch.cli.main import main

    assert main(["run", "m.yaml", "--dask-workers", "-3"]) == 2
    assert "must be a whole number 1..256, got '-3'" in capsys.readouterr().err


@pytest.mark.parametrize("value", ["abc", "nan", "-1", "inf"])
def test_no_workers_seconds_is_parsed_in_one_line(value, monkeypatch):
    from nst_batch.tasks.running.cluster import no_workers_s

    monkeypatch.setenv("NST_DASK_NO_WORKERS_S", value)
    with pytest.raises(InputError, match="NST_DASK_NO_WORKERS_S must be a number of seconds"):
        no_workers_s()
