"""Parameter sweeps in a manifest: expansion, names, precedence between levels, limits, and the
style targets the sweep points share."""

from pathlib import Path

import pytest
from PIL import Image

from nst_batch.tasks.errors import ManifestError
from nst_batch.tasks.planning.manifest import MAX_SWEEP_POINTS
from nst_batch.tasks.planning.plan import load_plan, sweep_name


@pytest.fixture
def folder(tmp_path):
    for name in ("photos/lake.jpg", "styles/starry.jpg", "styles/scream.png"):
        (tmp_path / name).parent.mkdir(parents=True, exist_ok=True)
        Image.new("RGB", (40, 30), (100, 150, 200)).save(tmp_path / name)
    return tmp_path


def _plan(folder: Path, text: str):
    path = folder / "m.yaml"
    path.write_text(text)
    return load_plan(str(path))


def test_a_sweep_at_defaults_runs_every_pair_at_every_combination_in_order(folder):
    plan = _plan(
        folder,
        """
defaults: {size: 64, sweep: {style_weight: [30, 100, 300], style_scale: [0.5, 1.0]}}
styles: {starry: styles/starry.jpg, scream: styles/scream.png}
contents: [photos/lake.jpg]
""",
    )
    assert len(plan.pairs) == 2 * 3 * 2
    starry = [p for p in plan.pairs if p.sweep_of == "lake__starry"]
    # The first parameter varies slowest, as written; each output is named after its values.
    assert [p.name for p in starry[:3]] == [
        "lake__starry__style_weight-30__style_scale-0.5",
        "lake__starry__style_weight-30__style_scale-1",
        "lake__starry__style_weight-100__style_scale-0.5",
    ]
    assert [(p.config.to_json()["style_weight"], p.config.to_json()["style_scale"]) for p in starry] == [
        (w, s) for w in (30, 100, 300) for s in (0.5, 1.0)
    ]
    assert starry[0].sweep == {"style_weight": 30, "style_scale": 0.5} and all(
        p.config.to_json()["size"] == 64 for p in plan.pairs
    )
    assert len({p.name for p in plan.pairs}) == 12


def test_the_most_specific_level_wins_between_values_and_sweeps(folder):
    plan = _plan(
        folder,
        """
defaults: {sweep: {style_weight: [30, 100]}}
styles:
  starry: styles/starry.jpg
  scream: {path: styles/scream.png, sweep: {tv_weight: [0, 1000]}}
pairs:
  - {content: photos/lake.jpg, style: starry, style_weight: 5}
  - {content: photos/lake.jpg, style: starry, name: scales, sweep: {scales: [auto, [0.5, 1]]}}
  - {content: photos/lake.jpg, style: scream}
""",
    )
    by_origin = {}
    for p in plan.pairs:
        by_origin.setdefault(p.origin, []).append(p)
    fixed = by_origin["pairs.0"]
    assert (
        len(fixed) == 1
        and fixed[0].config.to_json()["style_weight"] == 5
        and not fixed[0].sweep
        and fixed[0].name == "lake__starry"
    )
    scales = by_origin["pairs.1"]
    assert [p.name for p in scales] == [
        "scales__style_weight-30__scales-auto",
        "scales__style_weight-30__scales-0.5_1",
        "scales__style_weight-100__scales-auto",
        "scales__style_weight-100__scales-0.5_1",
    ]
    assert scales[1].config.to_json()["scales"] == [0.5, 1.0] and scales[0].config.to_json()["scales"] == []
    assert [p.sweep for p in by_origin["pairs.2"]] == [
        {"style_weight": w, "tv_weight": t} for w in (30, 100) for t in (0, 1000)
    ]


@pytest.mark.parametrize(
    ("sweep", "expected"),
    [
        ("{style_wieght: [1, 2]}", "unknown parameter 'style_wieght' (did you mean style_weight?)"),
        ("{style_weight: []}", "style_weight needs at least one value"),
        ("{style_weight: [10, -1]}", "style_weight must be a finite number >= 0, got -1"),
        ("{style_weight: [10, 10]}", "style_weight lists a value twice"),
        ("{size: [64, 99999]}", "size must be 16..16384 px, got 99999"),
    ],
)
def test_bad_sweeps_name_the_parameter_and_the_line(folder, sweep, expected):
    with pytest.raises(ManifestError) as err:
        _plan(
            folder, f"styles: {{starry: styles/starry.jpg}}\ncontents: [photos/lake.jpg]\ndefaults:\n  sweep: {sweep}\n"
        )
    assert len(err.value.problems) == 1
    problem = err.value.problems[0]
    assert expected in problem.message and problem.path == "defaults.sweep" and problem.line == 4


def test_a_sweep_past_the_limit_is_refused_with_its_count(folder):
    values = ", ".join(str(v) for v in range(1, 12))  # 11 x 11 = 121 points
    with pytest.raises(ManifestError) as err:
        _plan(
            folder,
            f"styles: {{starry: styles/starry.jpg}}\ncontents: [photos/lake.jpg]\n"
            f"defaults: {{sweep: {{style_weight: [{values}], content_weight: [{values}]}}}}\n",
        )
    message = str(err.value.problems[0])
    assert (
        f"the sweep makes 121 outputs of each pair (11 style_weight x 11 content_weight), over the limit of "
        f"{MAX_SWEEP_POINTS}" in message
    )


def test_a_combination_invalid_only_together_names_its_point(folder):
    with pytest.raises(ManifestError) as err:
        _plan(
            folder,
            "styles: {starry: styles/starry.jpg}\ncontents: [photos/lake.jpg]\n"
            "defaults: {style_layers: [relu1_1, relu2_1], sweep: {style_layer_weights: [[1, 2], [1, 2, 3]]}}\n",
        )
    assert len(
        err.value.problems
    ) == 1 and "style_layer_weights needs 2 entries, got 3 (at style_layer_weights=1,2,3)" in str(err.value)


def test_sweep_points_share_style_targets_unless_the_sweep_changes_them(folder):
    from nst_batch.tasks.running.scheduling import target_group as _target_group

    plan = _plan(
        folder,
        """
defaults: {size: 64, sweep: {style_weight: [30, 100, 300], style_scale: [0.5, 1.0]}}
styles: {starry: styles/starry.jpg}
contents: [photos/lake.jpg]
""",
    )
    groups = {_target_group(p, p.styles[0].uri) for p in plan.pairs}
    assert len(plan.pairs) == 6 and len(groups) == 2  # style_scale changes the targets' sizes; style_weight does not


def test_sweep_names_are_safe_and_the_plain_name_without_a_sweep():
    assert sweep_name("lake__starry", {}) == "lake__starry"
    assert sweep_name("a", {"init": "noise", "iterations": [50, 20]}) == "a__init-noise__iterations-50_20"


def test_validate_prints_how_many_outputs_the_sweeps_make(folder, capsys):
    from nst_batch.cli.main import main

    (folder / "m.yaml").write_text(
        "defaults: {size: 32, sweep: {style_weight: [30, 100]}}\nstyles: {starry: styles/starry.jpg}\n"
        "contents: [photos/lake.jpg]\noutput: out\n"
    )
    assert main(["validate", str(folder / "m.yaml")]) == 0
    assert "2 pairs (2 of them sweep points of 1 pair)" in capsys.readouterr().out


def test_a_sweep_point_records_its_values_in_its_sidecar_and_row(folder):
    import json

    from nst_batch.tasks.pair.pipeline import run_pair

    plan = _plan(
        folder,
        "defaults: {size: 32, iterations: 2, sweep: {style_weight: [30, 100]}}\nstyles: {starry: styles/starry.jpg}\n"
        "contents: [photos/lake.jpg]\noutput: out\n",
    )
    row = run_pair(plan.pairs[1], plan.settings)
    assert row.status == "produced" and row.sweep == {"style_weight": 100} and row.sweep_of == "lake__starry"
    sidecar = json.loads(Path(row.sidecar).read_text())
    assert sidecar["sweep"] == {"style_weight": 100} and sidecar["sweep_of"] == "lake__starry"
    assert (
        sidecar["parameters"]["style_weight"] == 100 and Path(row.output).name == "lake__starry__style_weight-100.png"
    )
