"""Manifest parsing (valid and each kind of invalid) and pair expansion."""

from pathlib import Path

import pytest
from PIL import Image

from nst_batch.tasks.errors import ManifestError
from nst_batch.tasks.planning.manifest import parse_manifest
from nst_batch.tasks.planning.plan import load_plan, output_name, safe_name


def _write(path: Path, text: str) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    return path


@pytest.fixture
def folder(tmp_path):
    for name in ("photos/a.jpg", "photos/b.png", "photos/notes.txt", "styles/starry.jpg", "styles/scream.png"):
        (tmp_path / name).parent.mkdir(parents=True, exist_ok=True)
        if name.endswith(".txt"):
            (tmp_path / name).write_text("x")
        else:
            Image.new("RGB", (40, 30), (100, 150, 200)).save(tmp_path / name)
    return tmp_path


FULL = """
output: ./out
defaults: {size: 64, iterations: 3}
styles:
  starry: styles/starry.jpg
  scream: {path: styles/scream.png, style_weight: 2000}
contents:
  - photos/*
pairs: all
"""


def test_all_pairs_with_relative_paths_and_style_overrides(folder):
    plan = load_plan(str(_write(folder / "m.yaml", FULL)))
    assert plan.settings.output_root == str(folder / "out")
    assert [p.name for p in plan.pairs] == ["a__starry", "a__scream", "b__starry", "b__scream"]
    a_scream = plan.pairs[1]
    assert a_scream.content_uri == str(folder / "photos" / "a.jpg")
    assert a_scream.styles[0].uri == str(folder / "styles" / "scream.png")
    assert (
        a_scream.config.to_json()["style_weight"] == 2000
        and a_scream.config.to_json()["size"] == 64
        and a_scream.config.to_json()["iterations"] == [3]
    )
    assert plan.pairs[0].config.to_json()["style_weight"] == 100.0  # the core's default
    assert plan.settings.output_uri("a__starry") == str(folder / "out" / "a__starry.png")


def test_explicit_pairs_with_blends_names_and_parameters(folder):
    text = """
styles: {starry: styles/starry.jpg, scream: styles/scream.png}
pairs:
  - {content: photos/a.jpg, style: [starry, scream], style_blend: [0.7, 0.3], name: blend-a}
  - {content: photos/b.png, style: starry, size: 32, preserve_color: true, tile_size: 256, upsample: residual}
"""
    plan = load_plan(str(_write(folder / "m.yaml", text)), output=str(folder / "elsewhere"))
    assert plan.settings.output_root == str(folder / "elsewhere")
    blend, single = plan.pairs
    assert blend.name == "blend-a" and [s.name for s in blend.styles] == ["starry", "scream"]
    assert blend.config.to_json()["style_blend"] == [0.7, 0.3]
    assert (
        single.name == "b__starry"
        and single.config.to_json()["size"] == 32
        and single.config.to_json()["preserve_color"] is True
    )
    assert single.config.tile_size == 256 and single.config.upsample == "residual"


@pytest.mark.parametrize(
    "text, expected",
    [
        ("styles: {a: x.jpg}\ncontents: [p.jpg]\nbogus: 1\n", ["bogus (line 3): unknown key"]),
        ("styles: {a: x.jpg}\ndefaults: {size: 64, sise: 3}\n", ["defaults.sise (line 2): unknown key"]),
        ("styles:\n  a: {path: x.jpg, colour: red}\n", ["styles.a.colour (line 2): unknown key"]),
        ("styles: {a: x.jpg}\ndefaults: {size: big}\n", ["defaults.size (line 2): Input should be a valid integer"]),
        ("contents: [p.jpg]\n", ["styles (line 1): required"]),
        ("styles: {a: x.jpg}\npairs: [{style: a}]\n", ["pairs.0.content (line 2): required"]),
        ("styles: {a: x.jpg}\nquality: 500\n", ["quality (line 2): Input should be less than or equal to 100"]),
        ("styles: {a: x.jpg}\ncontents: [p.jpg\n", ["YAML syntax error"]),
        ("- just\n- a list\n", ["must be a YAML mapping"]),
    ],
)
def test_invalid_manifests_name_the_field_and_line(text, expected):
    with pytest.raises(ManifestError) as info:
        parse_manifest(text, "m.yaml")
    rendered = [str(p) for p in info.value.problems]
    for want in expected:
        assert any(want in r for r in rendered), rendered


def test_every_problem_is_reported_at_once():
    text = "styles: {a: x.jpg}\ndefaults: {sise: 1}\nformat: gif\nextra: 2\n"
    with pytest.raises(ManifestError) as info:
        parse_manifest(text, "m.yaml")
    assert len(info.value.problems) == 3


def test_range_errors_are_reported_with_type_errors_and_unknown_keys(folder):
    text = """
styles: {starry: {path: styles/starry.jpg, style_scale: 99}}
defaults: {size: 0, sise: 3}
pairs:
  - {content: photos/a.jpg, style: starry, iterations: -1, pooling: min}
"""
    with pytest.raises(ManifestError) as info:
        load_plan(str(_write(folder / "m.yaml", text)))
    rendered = [str(p) for p in info.value.problems]
    assert rendered == [
        "styles.starry.style_scale (line 2): style_scale must be 0.05..8, got 99",
        "defaults.size (line 3): size must be 16..16384 px, got 0",
        "defaults.sise (line 3): unknown key (did you mean size?)",
        "pairs.0.iterations (line 5): iterations must be 0..100000, got -1",
        "pairs.0.pooling (line 5): Input should be 'max' or 'avg'",
    ]


def test_unknown_styles_and_empty_globs(folder):
    text = """
styles: {starry: styles/starry.jpg}
pairs:
  - {content: photos/a.jpg, style: [starry, nope]}
"""
    with pytest.raises(ManifestError, match="pairs.0.style .line 4.: unknown style 'nope'; known: starry"):
        load_plan(str(_write(folder / "m.yaml", text)))
    text = (
        "styles: {starry: styles/starry.jpg}\ncontents: [photos/zzz*.jpg, nothing/]\ndefaults: "
        "{style_layer_weights: [1, 2]}\n"
    )
    with pytest.raises(ManifestError) as info:
        load_plan(str(_write(folder / "m.yaml", text)))
    rendered = " | ".join(map(str, info.value.problems))
    assert "matches no images" in rendered and "style_layer_weights needs 5 entries, got 2" in rendered


def test_two_outputs_with_the_same_name(folder):
    """Generated names that collide get a short hash of their source; names the user gave are refused."""
    Image.new("RGB", (40, 30)).save(folder / "styles" / "a.jpg")  # same stem as photos/a.jpg
    text = "styles: {starry: styles/starry.jpg}\ncontents: [photos/a.jpg, styles/a.jpg]\n"
    names = [p.name for p in load_plan(str(_write(folder / "m.yaml", text))).pairs]
    assert len(set(names)) == 2 and all(n.startswith("a__starry-") for n in names)
    text = (
        "styles: {starry: styles/starry.jpg}\npairs:\n  - {content: photos/a.jpg, style: starry, name: same}\n"
        "  - {content: styles/a.jpg, style: starry, name: same}\n"
    )
    with pytest.raises(ManifestError, match="two pairs would write 'same'"):
        load_plan(str(_write(folder / "m.yaml", text)))


def test_missing_manifest():
    with pytest.raises(ManifestError, match="manifest not found"):
        load_plan("/nonexistent/m.yaml")


def test_safe_names():
    assert safe_name("../../etc/passwd") == "etc_passwd"
    assert safe_name("ünïcode name!.jpg") == "ünïcode_name_.jpg"  # letters of any script are kept
    long = safe_name("x" * 500)
    assert len(long) == 180 and long.startswith("x" * 170)  # bytes: 180 in UTF-8 (see MAX_NAME_BYTES)
    cjk = safe_name("東" * 100)
    assert len(cjk.encode()) <= 180 and cjk.startswith("東" * 57) and cjk != safe_name("東" * 99)
    assert output_name("s3://b/photos/My Photo.JPG", ["starry", "scream"]) == "My_Photo__starry+scream"


def test_example_manifests_are_valid():
    root = Path(__file__).resolve().parents[3] / "manifests"
    for manifest in root.glob("*.yaml"):
        assert load_plan(str(manifest)).pairs, manifest


@pytest.mark.parametrize("name", ["../../escape", "/abs/path", "a/b", "..", ".hidden"])
def test_pair_names_cannot_leave_the_output_root(folder, name):
    text = (
        f"styles: {{starry: styles/starry.jpg}}\npairs:\n  - {{content: photos/a.jpg, style: starry, name: '{name}'}}\n"
    )
    with pytest.raises(ManifestError, match="not a safe file name"):
        load_plan(str(_write(folder / "m.yaml", text)))


@pytest.mark.parametrize("style", ["../x", "a/b", ".dot", "x" * 65])
def test_style_names_are_checked(style):
    with pytest.raises(ManifestError, match="style name"):
        parse_manifest(f"styles: {{'{style}': x.jpg}}\n", "m.yaml")


def test_odd_content_names_stay_inside_the_output_root(folder):
    odd = folder / "photos" / ("weird name ü;$(rm -rf)" + "x" * 200 + ".png")
    Image.new("RGB", (40, 30)).save(odd)
    plan = load_plan(str(_write(folder / "m.yaml", f"styles: {{starry: styles/starry.jpg}}\ncontents: ['{odd}']\n")))
    (pair,) = plan.pairs
    out = Path(plan.settings.output_uri(pair.name))
    assert out.parent == folder / "out" and len(out.name.encode()) <= 184  # MAX_NAME_BYTES and the extension
    assert all(c.isalnum() or c in "._+-" for c in pair.name)


def test_scales_auto_and_coarse_size_in_a_manifest(folder):
    """The default schedule is spelled ``auto``, as on the command line; relative scales still work."""
    text = (
        "styles: {starry: styles/starry.jpg}\n"
        "defaults: {size: 1024, scales: auto, coarse_size: 200, iterations: [40, 20]}\n"
        "pairs:\n  - {content: photos/a.jpg, style: starry, scales: [0.5, 1], name: relative}\n"
        "  - {content: photos/b.png, style: starry, name: auto}\n"
    )
    plan = load_plan(str(_write(folder / "m.yaml", text)))
    configs = {p.name: p.config for p in plan.pairs}
    assert configs["relative"].sides() == (512, 1024)
    assert configs["auto"].sides() == (200, 400, 1024) and configs["auto"].iterations_per_scale() == (40, 20, 20)


def test_the_plan_carries_one_frozen_config_per_set_of_parameters_and_it_pickles(tmp_path):
    """Pairs with equal parameters share one StyleConfig, made once at planning; it travels to
    Dask workers as it is (pickled), not as a dict rebuilt into a config at each step."""
    import pickle

    from nst_batch.core import StyleConfig
    from nst_batch.tasks.planning.plan import load_plan
    from tests.flows.helpers import make_batch

    plan = load_plan(str(make_batch(tmp_path)))
    assert all(isinstance(p.config, StyleConfig) for p in plan.pairs)
    assert len({id(p.config) for p in plan.pairs}) == 1
    assert pickle.loads(pickle.dumps(plan.pairs[0])) == plan.pairs[0]
