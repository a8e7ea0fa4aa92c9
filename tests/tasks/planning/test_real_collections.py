"""Collections as they come off cameras, phones and zip files: shared output roots, names outside
ASCII and outside UTF-8, files a listing does not take, YAML 1.1 values, paths as a shell user
means them. Each: the right result, or one line before any work."""

import json
import os
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from nst_batch.tasks.errors import ManifestError, TooLargeError
from nst_batch.tasks.pair.image_files import decode_image
from nst_batch.tasks.planning import formats as images_module
from nst_batch.tasks.planning.manifest import ManifestProblem, parse_manifest
from nst_batch.tasks.planning.plan import MAX_NAME_BYTES, command_line_path, load_plan, plan_with_problems
from nst_batch.tasks.running.ownership import owned
from nst_batch.tasks.running.preflight import prepare_run

HEAD = "defaults: {size: 32, scales: [1.0], iterations: 1}\nstyles: {starry: styles/starry.png}\n"


@pytest.fixture
def folder(tmp_path):
    for sub in ("photos", "styles", "cardA", "cardB"):
        (tmp_path / sub).mkdir()
    Image.new("RGB", (40, 30), (200, 40, 40)).save(tmp_path / "photos" / "a.png")
    Image.new("RGB", (40, 30), (40, 200, 40)).save(tmp_path / "styles" / "starry.png")
    Image.new("RGB", (40, 30), (40, 40, 200)).save(tmp_path / "cardA" / "IMG_0001.jpg")
    Image.new("RGB", (40, 30), (200, 200, 40)).save(tmp_path / "cardB" / "IMG_0001.jpg")
    return tmp_path


def _manifest(folder: Path, text: str, name: str = "m.yaml") -> str:
    (folder / name).write_text(HEAD + text)
    return str(folder / name)


def _problems(manifest: str) -> str:
    with pytest.raises(ManifestError) as info:
        prepare_run(manifest)
    return " | ".join(map(str, info.value.problems))


def _result(plan, name: str, content: str, manifest: str, run_id: str = "run-a") -> None:
    """A finished pair's files as a run writes them (a sidecar that names its photo and manifest)."""
    Image.new("RGB", (32, 24)).save(plan.settings.output_uri(name))
    style = {"name": "starry", "uri": plan.pairs[0].styles[0].uri}
    Path(plan.settings.sidecar_uri(name)).write_text(
        json.dumps(
            {"name": name, "content": {"uri": content}, "styles": [style], "manifest": manifest, "run_id": run_id}
        )
    )


# --- one output root, many manifests ---------------------------------------------------------


def test_a_second_manifest_with_the_same_photo_stem_takes_a_hashed_name_and_keeps_it(folder):
    first = _manifest(folder, "output: out\ncontents: [cardA/IMG_0001.jpg]\n", "a.yaml")
    second = _manifest(folder, "output: out\ncontents: [cardB/IMG_0001.jpg]\n", "b.yaml")
    plan_a = prepare_run(first).plan
    (folder / "out").mkdir()
    _result(plan_a, "IMG_0001__starry", plan_a.pairs[0].content_uri, first)
    plan_b = prepare_run(second).plan
    moved = plan_b.pairs[0].name
    assert moved.startswith("IMG_0001__starry-") and len(moved) == len("IMG_0001__starry-") + 8
    assert any(
        "IMG_0001__starry is taken by the result of run run-a of " in str(n) and moved in str(n) for n in plan_b.notes
    )
    # The same name on every run of the second manifest (its result is found again), and the
    # first manifest keeps its own name.
    _result(plan_b, moved, plan_b.pairs[0].content_uri, second, "run-b")
    assert prepare_run(second).plan.pairs[0].name == moved
    assert prepare_run(first).plan.pairs[0].name == "IMG_0001__starry"


def test_the_same_manifest_with_another_photo_under_a_name_is_its_own_result(folder):
    """A manifest whose photo moved redoes its pair in place, as before: its own result."""
    manifest = _manifest(folder, "output: out\ncontents: [cardA/IMG_0001.jpg]\n")
    plan = prepare_run(manifest).plan
    (folder / "out").mkdir()
    _result(plan, "IMG_0001__starry", str(folder / "old" / "IMG_0001.jpg"), manifest)
    assert prepare_run(manifest).plan.pairs[0].name == "IMG_0001__starry"


def test_an_explicit_name_another_manifest_holds_is_refused_before_any_work(folder):
    first = _manifest(folder, "output: out\ncontents: [cardA/IMG_0001.jpg]\n", "a.yaml")
    plan_a = prepare_run(first).plan
    (folder / "out").mkdir()
    _result(plan_a, "IMG_0001__starry", plan_a.pairs[0].content_uri, first)
    second = _manifest(
        folder, "output: out\npairs: [{content: cardB/IMG_0001.jpg, style: starry, name: IMG_0001__starry}]\n", "b.yaml"
    )
    problem = _problems(second)
    assert "pairs.0: " in problem and "IMG_0001__starry.png holds the result of run run-a of " in problem
    assert f"from {plan_a.pairs[0].content_uri}; give this pair another name" in problem


def test_an_output_the_tool_wrote_without_its_sidecar_is_produced_again(folder):
    """A run killed between an output and its sidecar: the output is signed, so it is the tool's."""
    import torch

    from nst_batch.tasks.pair.image_files import encode_image

    manifest = _manifest(folder, "output: out\ncontents: [photos/a.png]\n")
    (folder / "out").mkdir()
    (folder / "out" / "a__starry.png").write_bytes(encode_image(torch.rand(1, 3, 24, 32), "PNG"))
    assert prepare_run(manifest).plan.pairs[0].name == "a__starry"
    Image.new("RGB", (32, 24)).save(folder / "out" / "a__starry.png")  # someone's image under that name
    assert "a__starry.png exists and was not written by nst-batch" in _problems(manifest)


def test_a_gallery_or_summary_the_tool_did_not_write_is_never_replaced(folder):
    manifest = _manifest(folder, "output: out\ncontents: [photos/a.png]\n")
    (folder / "out").mkdir()
    (folder / "out" / "index.html").write_text("<html><body>our team's home page</body></html>")
    (folder / "out" / "summary.json").write_text('{"quarter": "Q3"}')
    problem = _problems(manifest)
    assert (
        "out/index.html exists and was not written by nst-batch" in problem
        and "out/summary.json exists and was not written" in problem
    )
    # The tool's own are replaced: a gallery it wrote (with its mark) and a summary it wrote.
    from nst_batch.tasks.output.layout import GALLERY_MARK

    (folder / "out" / "index.html").write_text(f"<html><head>{GALLERY_MARK}</head></html>")
    (folder / "out" / "summary.json").write_text(json.dumps({"manifest": manifest, "counts": {}, "pairs": []}))
    prepare_run(manifest)


def test_an_output_root_holding_the_paintings_never_writes_over_one(folder):
    """The style folder as the output root, and a pair named as a painting is."""
    Image.new("RGB", (40, 30)).save(folder / "styles" / "dusk.png")
    manifest = _manifest(folder, "output: styles\npairs: [{content: photos/a.png, style: starry, name: dusk}]\n")
    # Not an input of this manifest, but not the tool's either: no sidecar, no signature.
    assert "styles/dusk.png exists and was not written by nst-batch (no sidecar, no signature)" in _problems(manifest)
    (folder / "m.yaml").write_text(
        HEAD.replace("styles/starry.png", "styles/starry.png, dusk: styles/dusk.png")
        + "output: styles\npairs: [{content: photos/a.png, style: starry, name: dusk}]\n"
    )
    assert "is an input (styles.dusk)" in _problems(str(folder / "m.yaml"))
    # Generated names next to the paintings are fine.
    prepare_run(_manifest(folder, "output: styles\ncontents: [photos/a.png]\n"))


# --- names -------------------------------------------------------------------------------------


def test_names_outside_ascii_are_kept_and_long_ones_fit_the_file_system_in_bytes(folder):
    for name in ("café.png", "東京.png", "東" * 72 + ".png"):
        Image.new("RGB", (40, 30)).save(folder / "photos" / name)
    plan = prepare_run(_manifest(folder, "output: out\ncontents: [photos/]\n")).plan
    names = sorted(p.name for p in plan.pairs)
    assert "café__starry" in names and "東京__starry" in names
    longest = max(names, key=lambda n: len(n.encode()))
    assert len(longest.encode()) <= MAX_NAME_BYTES and longest.startswith("東" * 50)
    # Every file a pair writes fits in 255 bytes, with the atomic write's temporary name.
    out = folder / "out"
    out.mkdir()
    for pair in plan.pairs:
        Path(plan.settings.output_uri(pair.name)).write_bytes(b"x")
        (out / f".{pair.name}.png.1234567-1234567890.abcdefgh.part").write_bytes(b"x")
    problems = _problems(
        _manifest(folder, f"output: out\npairs: [{{content: photos/a.png, style: starry, name: {'東' * 61}}}]\n")
    )
    assert f"is 183 bytes in UTF-8, over the {MAX_NAME_BYTES} a name may take" in problems


def test_a_name_that_is_not_utf8_is_skipped_in_a_listing_and_refused_when_named(folder):
    raw = os.fsdecode(b"caf\xe9.png")  # a Windows zip unpacked on Linux
    Image.new("RGB", (40, 30)).save(os.path.join(folder / "photos", raw))
    plan = load_plan(_manifest(folder, "output: out\ncontents: [photos/]\n"))
    assert [Path(p.content_uri).name for p in plan.pairs] == ["a.png"]
    (note,) = plan.notes
    assert "1 file with a name that is not UTF-8 skipped (caf\\xe9.png): " in str(note) and "convmv" in str(note)
    os.rename(os.path.join(folder / "photos", raw), folder / "photos" / "café.png")  # renamed as the note says: taken
    assert sorted(p.name for p in load_plan(str(folder / "m.yaml")).pairs) == ["a__starry", "café__starry"]


def test_validate_refuses_a_named_photo_whose_name_is_not_utf8(folder):
    raw = os.fsdecode(b"caf\xe9.png")
    Image.new("RGB", (40, 30)).save(os.path.join(folder / "photos", raw))
    plan, problems = plan_with_problems(_manifest(folder, "output: out\ncontents: [photos/]\n"))
    assert plan is not None and not problems  # a listing skips it (the note says so)
    from nst_batch.tasks.planning.plan import _expand_contents

    found: list[ManifestProblem] = []
    assert _expand_contents(os.path.join(folder / "photos", raw), "contents.0", found, str(folder / "out"), []) == []
    assert "caf\\xe9.png: the file name is not valid UTF-8" in str(found[0])


def test_messages_escape_control_characters_in_file_names():
    problem = ManifestProblem("contents.0", "photos/\x1b[31mred.png: no such file")
    assert "\x1b" not in str(problem) and "\\x1b[31mred.png" in str(problem)


# --- listings ----------------------------------------------------------------------------------


def test_a_listed_folder_counts_and_names_every_file_it_does_not_take(folder, monkeypatch):
    monkeypatch.setattr(images_module, "_HEIF", False)  # pillow-heif not installed
    for name in ("b.HEIC", "c.heic", "d.dng", "README", "notes.txt", ".DS_Store"):
        (folder / "photos" / name).write_bytes(b"not an image")
    Image.new("RGB", (40, 30)).save(folder / "photos" / "e.jpe", "JPEG")
    plan = load_plan(_manifest(folder, "output: out\ncontents: [photos/]\n"))
    assert sorted(Path(p.content_uri).name for p in plan.pairs) == ["a.png", "e.jpe"]
    notes = [str(n) for n in plan.notes]
    assert any(
        "contents.0: 2 .heic files skipped (b.HEIC, c.heic): HEIC/HEIF needs the optional pillow-heif: pip install "
        "'nst-batch[heic]'" in n
        for n in notes
    )
    assert any("1 .dng file skipped (d.dng): camera RAW files are not read" in n for n in notes)
    assert any("1 file without an extension skipped (README): no extension" in n for n in notes)
    assert any("1 .txt file skipped (notes.txt): not an image file" in n for n in notes)
    assert len(notes) == 4  # hidden files are the system's


def test_heic_photos_are_taken_and_decoded_with_the_heic_extra(folder):
    pytest.importorskip("pillow_heif")
    monkey = images_module._HEIF
    images_module._HEIF = None
    try:
        assert images_module.heif_supported()
        Image.new("RGB", (40, 30), (10, 120, 200)).save(folder / "photos" / "iphone.HEIC")
        plan = load_plan(_manifest(folder, "output: out\ncontents: [photos/]\n"))
        assert "iphone.HEIC" in {Path(p.content_uri).name for p in plan.pairs} and not plan.notes
        loaded = decode_image((folder / "photos" / "iphone.HEIC").read_bytes(), "iphone.HEIC")
        assert loaded.original_size == (40, 30) and abs(float(loaded.rgb[0, 2].mean()) - 200 / 255) < 0.05
    finally:
        images_module._HEIF = monkey


def test_a_photo_listed_and_matched_by_a_glob_is_one_pair_with_a_note(folder):
    plan = load_plan(_manifest(folder, "output: out\ncontents: [photos/a.png, 'photos/*.png']\n"))
    assert [p.name for p in plan.pairs] == ["a__starry"]
    assert "contents.1: " in str(plan.notes[0]) and "is listed by contents.0 too: one pair" in str(plan.notes[0])


# --- paths -------------------------------------------------------------------------------------


def test_output_on_the_command_line_is_against_the_working_directory(folder, tmp_path_factory, monkeypatch):
    manifest = _manifest(folder, "output: out\ncontents: [photos/a.png]\n")
    elsewhere = tmp_path_factory.mktemp("shell")
    monkeypatch.chdir(elsewhere)
    assert load_plan(manifest, "myout").settings.output_root == str(elsewhere / "myout")
    assert load_plan(manifest).settings.output_root == str(folder / "out")  # the manifest's own: against the manifest
    assert command_line_path("s3://bucket/out") == "s3://bucket/out" and command_line_path("/data/out") == "/data/out"
    assert command_line_path("~/x") == os.path.expanduser("~/x")


def test_a_symlink_loop_named_in_a_manifest_is_one_problem(folder):
    os.symlink("loop2.png", folder / "photos" / "loop1.png")
    os.symlink("loop1.png", folder / "photos" / "loop2.png")
    plan, problems = plan_with_problems(_manifest(folder, "output: out\ncontents: [photos/loop1.png]\n"))
    from nst_batch.tasks.running.preflight import input_problems

    assert plan is not None
    (problem,) = input_problems(plan)
    assert "loop1.png: cannot read: Too many levels of symbolic links" in str(problem)


# --- values as written -------------------------------------------------------------------------


def test_yaml_values_read_as_a_person_wrote_them():
    manifest = parse_manifest(
        "styles: {no: a.jpg, 1889: b.jpg, on: c.jpg}\n"
        "defaults: {size: 0040, iterations: '150,30', seed: 0o17}\n"
        "pairs: [{content: 0040.jpg, style: no}, {content: x.jpg, style: [1889, on]}]\nkeep_earlier: true\n",
        "m.yaml",
    )
    assert list(manifest.styles) == ["no", "1889", "on"]
    assert manifest.defaults.given() == {"size": 40, "iterations": (150, 30), "seed": 15}
    assert (
        manifest.pairs[0].content == "0040.jpg"
        and manifest.pairs[0].style == "no"
        and manifest.pairs[1].style == ["1889", "on"]
    )
    assert manifest.keep_earlier is True


# --- decoding ----------------------------------------------------------------------------------


def test_16_bit_decoding_is_counted_and_converted_without_a_float64_copy(monkeypatch):
    ramp = (np.arange(64 * 48, dtype=np.uint32).reshape(48, 64) * 21).astype(np.uint16)
    import io

    buffer = io.BytesIO()
    Image.fromarray(ramp).save(buffer, "PNG")
    loaded = decode_image(buffer.getvalue(), "ramp.png")
    expected = np.clip(np.rint(ramp.astype(np.float64) / 65535 * 255), 0, 255) / 255
    assert np.allclose(loaded.rgb[0, 0].numpy(), expected, atol=1e-6)
    # A large 16-bit image over the memory budget is refused from its header.
    big = io.BytesIO()
    Image.new("I;16", (6000, 6000)).save(big, "PNG")
    monkeypatch.setenv("NST_MAX_MEMORY", "200M")
    with pytest.raises(
        TooLargeError,
        match=r"big.png: decoding its 6000x6000 pixels \(I;16\) needs about \d+ MiB, over the 200 MiB of "
        r"NST_MAX_MEMORY=200M",
    ):
        decode_image(big.getvalue(), "big.png")


def test_frames_and_decoder_warnings_become_notes_not_terminal_text(recwarn):
    import io

    frames = [Image.new("RGB", (40, 30), c) for c in ((255, 0, 0), (0, 255, 0))]
    gif = io.BytesIO()
    frames[0].save(gif, "GIF", save_all=True, append_images=frames[1:])
    loaded = decode_image(gif.getvalue(), "anim.gif")
    assert loaded.notes == ("2 frames: the first is used",)
    assert not [w for w in recwarn if "PIL" in str(w.filename)]


def test_owned_plans_are_unchanged_without_earlier_results(folder):
    plan = load_plan(_manifest(folder, "output: out\ncontents: [photos/a.png]\n"))
    same, problems = owned(plan)
    assert same == plan and problems == []


def test_the_gallery_shows_pairs_a_stopped_run_finished_after_the_last_summary(folder):
    """The last summary failed a pair; a later run finished it and was stopped (Ctrl-C) before
    writing its own summary: the gallery shows the finished pair, not the old failure."""
    import datetime

    import torch

    from nst_batch.tasks.pair.image_files import encode_image
    from nst_batch.tasks.presenting.gallery import build_gallery

    out = folder / "out"
    out.mkdir()
    then = datetime.datetime(2026, 12, 1, tzinfo=datetime.timezone.utc)
    (out / "summary.json").write_text(
        json.dumps(
            {
                "manifest": "m.yaml",
                "counts": {},
                "finished_at": then.isoformat(),
                "pairs": [
                    {
                        "name": "a__starry",
                        "content": str(folder / "photos" / "a.png"),
                        "styles": ["s.png"],
                        "style_names": ["starry"],
                        "status": "failed",
                        "reason": "the disk was full",
                    }
                ],
            }
        )
    )
    (out / "a__starry.png").write_bytes(encode_image(torch.rand(1, 3, 24, 32), "PNG"))
    later = (then + datetime.timedelta(hours=1)).isoformat()
    (out / "a__starry.json").write_text(
        json.dumps(
            {
                "name": "a__starry",
                "content": {"uri": str(folder / "photos" / "a.png")},
                "styles": [{"name": "starry", "uri": "s.png"}],
                "finished_at": later,
                "output_size": [32, 24],
            }
        )
    )
    build_gallery(str(out))
    page = (out / "index.html").read_text()
    assert 'class="produced"' in page and "the disk was full" not in page


def test_one_manifest_named_two_ways_owns_its_names(folder, monkeypatch):
    """`nst run m.yaml` in its folder and `nst run /abs/m.yaml` elsewhere are one manifest: its
    photo moved, its pair is redone in place, not moved aside as another manifest's would be."""
    manifest = _manifest(folder, "output: out\ncontents: [cardA/IMG_0001.jpg]\n")
    monkeypatch.chdir(folder)
    plan = prepare_run("m.yaml").plan
    assert plan.settings.manifest == manifest
    (folder / "out").mkdir()
    _result(plan, "IMG_0001__starry", str(folder / "old" / "IMG_0001.jpg"), plan.settings.manifest)
    monkeypatch.chdir(folder / "photos")
    assert prepare_run(manifest).plan.pairs[0].name == "IMG_0001__starry"
