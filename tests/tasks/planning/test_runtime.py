"""How and where to run, declared once (nst_batch.tasks.planning.runtime.RuntimeOptions): the
manifest's runtime keys and nst stylize's runtime flags are generated from it, and its range check
is the only one."""

from __future__ import annotations

import argparse
import dataclasses

import pytest

from nst_batch.tasks.errors import InputError, ManifestError
from nst_batch.tasks.planning.manifest import Manifest, parse_manifest
from nst_batch.tasks.planning.runtime import MAX_BATCH, RuntimeOptions, range_problem

SETTINGS = [f.name for f in dataclasses.fields(RuntimeOptions)]


def test_every_runtime_setting_is_a_manifest_key_with_its_default_and_help():
    for f in dataclasses.fields(RuntimeOptions):
        key = Manifest.model_fields[f.name]
        assert key.default == f.default and key.description == f.metadata["help"], f.name


def test_every_runtime_setting_of_one_image_is_an_nst_stylize_flag_with_its_help():
    from nst_batch.cli.parser import build_parser

    stylize = next(a for a in build_parser()._actions if isinstance(a, argparse._SubParsersAction)).choices["stylize"]
    flags = {a.dest: a for a in stylize._actions}
    for f in dataclasses.fields(RuntimeOptions):
        if not f.metadata["one_image"]:
            assert f.name not in flags  # a batch's size says nothing about one image
            continue
        assert f.metadata["help"] in flags[f.name].help and flags[f.name].default == f.default, f.name


def test_the_manifest_reads_into_runtime_options_through_one_conversion():
    manifest = parse_manifest("styles: {s: s.png}\ndeterministic: true\nbatch: 3\nquality: 80\n", "m.yaml")
    assert manifest.runtime() == RuntimeOptions(
        deterministic=True, batch=3, quality=80
    )  # a batch sets all nst stylize can


@pytest.mark.parametrize(
    ("name", "value", "message"),
    [
        ("quality", 0, "quality must be 1..100, got 0"),
        ("max_pixels", 0, "max_pixels must be >= 1, got 0"),
        ("batch", MAX_BATCH + 1, f"batch must be 0 (auto) or 1..{MAX_BATCH}, got {MAX_BATCH + 1}"),
        ("threads", -1, "threads must be 0 (auto) or 1..1024, got -1"),
    ],
)
def test_one_range_check_says_the_setting_and_its_range(name, value, message):
    assert range_problem(name, value) == message
    with pytest.raises(InputError) as info:
        RuntimeOptions(**{name: value})
    assert str(info.value) == message and info.value.settings == (name,)
    with pytest.raises(ManifestError) as problem:  # the manifest's key refuses it too, at its line
        parse_manifest(f"styles: {{s: s.png}}\n{name}: {value}\n", "m.yaml")
    assert [p.path for p in problem.value.problems] == [name] and problem.value.problems[0].line == 2


def test_values_in_range_pass():
    assert all(range_problem(name, getattr(RuntimeOptions(), name)) is None for name in SETTINGS)
    assert RuntimeOptions(quality=100, batch=MAX_BATCH, threads=1).quality == 100
