"""Collections nobody curated: malformed S3 URIs, outputs inside the inputs, odd and colliding
names, reserved names, odd files and manifests. Each: the right result or one clear problem."""

import os
from pathlib import Path

import pytest
from PIL import Image

from nst_batch.tasks.errors import ManifestError, PairFailed
from nst_batch.tasks.output.storage import LocalStorage, uri_problem
from nst_batch.tasks.pair.pipeline import run_pair
from nst_batch.tasks.planning.manifest import parse_manifest
from nst_batch.tasks.planning.plan import load_plan, safe_name
from nst_batch.tasks.running.preflight import input_problems


@pytest.fixture
def folder(tmp_path):
    (tmp_path / "photos").mkdir()
    (tmp_path / "styles").mkdir()
    Image.new("RGB", (40, 30), (200, 40, 40)).save(tmp_path / "photos" / "a.png")
    Image.new("RGB", (40, 30), (40, 200, 40)).save(tmp_path / "styles" / "starry.png")
    return tmp_path


def _plan(folder: Path, text: str):
    (folder / "m.yaml").write_text(
        "defaults: {size: 32, scales: [1.0], iterations: 1}\nstyles: {starry: styles/starry.png}\n" + text
    )
    return load_plan(str(folder / "m.yaml"))


def _problems(folder: Path, text: str) -> str:
    with pytest.raises(ManifestError) as info:
        _plan(folder, text)
    return " | ".join(map(str, info.value.problems))


@pytest.mark.parametrize(
    "uri, wanted",
    [
        ("s3:/mybucket/prefix", "not a well-formed s3:// URI"),
        ("S3://mybucket/prefix", "not a well-formed s3:// URI"),
        ("s3://", "no bucket"),
        ("s3://my bucket/out", "not a valid S3 bucket name"),
        ("s3://bkt/x.png?versionId=1", "query strings"),
        ("https://example.com/out", "only s3:// and local paths"),
    ],
)
def test_malformed_s3_roots_are_problems_never_local_folders(folder, monkeypatch, uri, wanted):
    monkeypatch.chdir(folder)
    assert wanted in _problems(folder, f"output: '{uri}'\ncontents: [photos/a.png]\n")
    assert wanted in _problems(folder, f"contents: ['{uri}']\n")
    assert not any(p.name.lower().startswith(("s3", "https")) for p in folder.iterdir())
    assert uri_problem("s3://bucket-ok/prefix/") is None and uri_problem("./s3:/x") is None


def test_a_run_never_stylizes_its_own_outputs(folder):
    """The output root inside the contents folder: listings leave it out, so a re-run plans the
    same pairs, not a__starry__starry."""
    text = "output: photos/out\ncontents: [photos/]\n"
    (folder / "photos" / "out").mkdir()
    Image.new("RGB", (32, 24)).save(folder / "photos" / "out" / "a__starry.png")
    Image.new("RGB", (32, 24)).save(folder / "photos" / "out" / "thumbs_x.png")
    assert [p.name for p in _plan(folder, text).pairs] == ["a__starry"]
    assert [p.name for p in _plan(folder, "output: photos/out\ncontents: ['photos/**/*.png']\n").pairs] == ["a__starry"]
    assert "inside the output root" in _problems(folder, "output: photos/out\ncontents: [photos/out/a__starry.png]\n")


def test_a_file_named_like_a_pattern_is_that_file(folder):
    Image.new("RGB", (40, 30)).save(folder / "photos" / "photo[1].png")
    Image.new("RGB", (40, 30)).save(folder / "photos" / "photo1.png")
    pairs = _plan(folder, "contents: ['photos/photo[1].png']\n").pairs
    assert [Path(p.content_uri).name for p in pairs] == ["photo[1].png"]


def test_names_keep_unicode_and_collisions_get_a_hash_not_a_refusal(folder):
    for name in ("東京", "大阪", "café", "cafè", "my photo", "my_photo"):
        Image.new("RGB", (40, 30)).save(folder / "photos" / f"{name}.png")
    names = sorted(p.name for p in _plan(folder, "contents: [photos/]\n").pairs)
    assert "東京__starry" in names and "大阪__starry" in names and "café__starry" in names and "cafè__starry" in names
    collided = [n for n in names if n.startswith("my_photo__starry")]
    assert (
        len(collided) == 2 and len(set(collided)) == 2 and all(len(n) == len("my_photo__starry") + 9 for n in collided)
    )
    assert safe_name("../x/é\u0301") == "x_é"  # NFC: a decomposed é is the composed one


def test_reserved_names(folder):
    assert "reserved" in _problems(folder, "pairs:\n  - {content: photos/a.png, style: starry, name: summary}\n")
    Image.new("RGB", (40, 30)).save(folder / "photos" / "summary.png")
    plan = _plan(
        folder,
        "pairs:\n  - {content: photos/summary.png, style: starry, name: ok}\n  - {content: photos/a.png, style: "
        "starry}\n",
    )
    assert [p.name for p in plan.pairs] == ["ok", "a__starry"]


@pytest.mark.parametrize(
    "text, wanted",
    [
        ("output: a\noutput: b\n", "duplicate key 'output' (first on line 2)"),
        ("[" * 500 + "]" * 500, "nested too deeply"),
    ],
)
def test_manifest_edge_cases_are_one_problem(text, wanted):
    with pytest.raises(ManifestError, match=wanted.replace("(", r"\(").replace(")", r"\)")):
        parse_manifest("styles: {a: x.png}\n" + text if text.startswith("output") else text, "m.yaml")


def test_a_manifest_that_is_a_folder_or_has_a_nul_byte(folder):
    with pytest.raises(ManifestError, match="cannot read the manifest: .* is a directory"):
        load_plan(str(folder))
    assert "NUL byte" in _problems(folder, 'contents: ["photos/a\\0.png"]\n')


def test_avif_and_jfif_are_listed(folder):
    Image.new("RGB", (40, 30)).save(folder / "photos" / "b.jfif", "JPEG")
    Image.new("RGB", (40, 30)).save(folder / "photos" / "c.avif")
    assert sorted(Path(p.content_uri).name for p in _plan(folder, "contents: [photos/]\n").pairs) == [
        "a.png",
        "b.jfif",
        "c.avif",
    ]


def test_only_regular_files_are_read(folder):
    fifo = folder / "photos" / "pipe.png"
    os.mkfifo(fifo)
    plan = _plan(folder, "contents: [photos/pipe.png, photos/a.png]\n")
    with pytest.raises(PairFailed, match="not a regular file"):  # and at once, not blocked on the pipe
        run_pair(plan.pairs[0], plan.settings)
    assert run_pair(plan.pairs[1], plan.settings).status == "produced"
    assert [p.path for p in input_problems(plan)] == ["contents.0"]


def test_the_header_is_checked_before_the_body_is_read(folder, monkeypatch):
    junk = folder / "photos" / "huge.png"
    junk.write_bytes(b"\0" * (4 << 20))  # 4 MB of something that is not an image
    plan = _plan(folder, "contents: [photos/huge.png]\n")
    read_whole = []
    real = LocalStorage.read_bytes
    monkeypatch.setattr(LocalStorage, "read_bytes", lambda self, uri: (read_whole.append(uri), real(self, uri))[1])
    with pytest.raises(PairFailed, match="not an image file"):
        run_pair(plan.pairs[0], plan.settings)
    assert str(junk) not in read_whole


def test_a_recursive_glob_does_not_follow_a_symlink_loop(folder):
    (folder / "photos" / "sub").mkdir()
    (folder / "photos" / "sub" / "loop").symlink_to(folder / "photos")
    Image.new("RGB", (40, 30)).save(folder / "photos" / "sub" / "b.png")
    found = LocalStorage().glob(str(folder / "photos" / "**" / "*.png"))
    assert [Path(p).name for p in found] == ["a.png", "b.png"]
