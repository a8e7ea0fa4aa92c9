"""`nst validate`, `nst run` and `nst gallery`."""

import json
from pathlib import Path

from nst_batch.cli.main import main
from tests.flows.helpers import make_batch


def test_validate_prints_the_plan(tmp_path, capsys):
    manifest = make_batch(tmp_path)
    assert main(["validate", str(manifest)]) == 0
    out = capsys.readouterr().out
    assert "4 pairs, 2 styles" in out and "a__waves.png" in out
    assert main(["validate", str(manifest), "--json"]) == 0
    plan = json.loads(capsys.readouterr().out)
    assert [p["name"] for p in plan["pairs"]] == ["a__stripes", "a__waves", "b__stripes", "b__waves"]


def test_validate_reports_every_problem_with_its_line(tmp_path, capsys):
    bad = tmp_path / "bad.yaml"
    bad.write_text("styles: {a: x.png}\ndefaults:\n  sizee: 3\n  iterations: lots\nformat: gif\n")
    assert main(["validate", str(bad)]) == 2
    err = capsys.readouterr().err
    assert "3 problems in the manifest" in err
    assert (
        "defaults.sizee (line 3): unknown key" in err
        and "defaults.iterations.0 (line 4)" in err
        and "format (line 5)" in err
    )


def test_run_success_failure_and_summary_json(prefect_server, tmp_path, capsys):
    manifest = make_batch(tmp_path, corrupt=True)
    summary_path = tmp_path / "summary-copy.json"
    assert main(["run", str(manifest), "--summary-json", str(summary_path)]) == 1
    out = capsys.readouterr().out
    assert (
        "6 pairs planned: 4 produced, 0 skipped, 2 failed" in out
        and "FAILED 2 pairs (broken__stripes, broken__waves): " in out
    )  # one line per reason
    summary = json.loads(summary_path.read_text())
    assert summary["counts"]["failed"] == 2 and summary["failures"][0]["reason"]
    (tmp_path / "photos" / "broken.png").unlink()
    assert main(["run", str(manifest)]) == 0
    out = capsys.readouterr().out
    assert "4 pairs planned: 0 produced, 4 skipped, 0 failed" in out
    assert "style targets: 2 read from the cache (made by earlier runs)" in out  # not "0 computed, 2 from cache"
    # Both runs are kept (summary.json is the latest) and nst runs lists them, oldest first.
    kept = sorted((tmp_path / "out" / "runs").glob("*.json"))
    assert len(kept) == 2 and json.loads((tmp_path / "out" / "summary.json").read_text()) == json.loads(
        kept[1].read_text()
    )
    assert main(["runs", str(tmp_path / "out")]) == 0
    listed = capsys.readouterr().out.splitlines()
    first, second = json.loads(kept[0].read_text()), json.loads(kept[1].read_text())
    assert listed[0].startswith("started (UTC)") and len(listed) == 4  # header, run 1, its failure, run 2
    assert first["run_id"] in listed[1] and "      6     4       0      2" in listed[1] and str(manifest) in listed[1]
    assert listed[2].strip().startswith("failed: broken__stripes:") and "(and 1 more)" in listed[2]
    assert second["run_id"] in listed[3] and "      4     0       4      0" in listed[3]
    assert first["started_at"] <= second["started_at"] and first["finished_at"]


def test_runs_of_a_folder_without_runs_is_one_line(tmp_path, capsys):
    assert main(["runs", str(tmp_path)]) == 2
    assert capsys.readouterr().err.strip().endswith("run nst run with this output first")


def test_run_refuses_a_bad_manifest_before_starting(tmp_path, capsys):
    bad = tmp_path / "bad.yaml"
    bad.write_text("styles: {a: x.png}\ncontents: [nothing/*.png]\n")
    assert main(["run", str(bad)]) == 2
    assert "matches no images" in capsys.readouterr().err
    assert not (tmp_path / "out").exists()


def test_gallery_rebuilds_from_sidecars(prefect_server, tmp_path, capsys):
    manifest = make_batch(tmp_path)
    assert main(["run", str(manifest)]) == 0
    (tmp_path / "out" / "index.html").unlink()
    assert main(["gallery", str(tmp_path / "out")]) == 0
    page = (tmp_path / "out" / "index.html").read_text()
    assert page.count('<td class="produced"') == 4 and "4 images: 2 photos × 2 styles" in page


def test_validate_checks_every_input_and_reports_all_at_once(tmp_path, capsys):
    manifest = make_batch(tmp_path)
    (tmp_path / "photos" / "notes.png").write_text("not an image")
    manifest.write_text(
        manifest.read_text()
        .replace("contents: [photos/*.png]", "contents: [photos/*.png, contnet/, photos/typo.png]")
        .replace("waves: styles/waves.png", "waves: styles/nowhere.png")
    )
    assert main(["validate", str(manifest)]) == 2
    err = capsys.readouterr().err
    assert "4 problems in the manifest" in err
    assert "styles.waves" in err and "nowhere.png: no such file" in err
    assert "contnet: no such file" in err and "typo.png: no such file" in err and "notes.png: not an image file" in err
    assert not (tmp_path / "out").exists()


def test_validate_names_every_unknown_style(tmp_path, capsys):
    manifest = make_batch(tmp_path)
    manifest.write_text(
        manifest.read_text().replace(
            "contents: [photos/*.png]",
            "pairs:\n  - {content: photos/a.png, style: strpes}\n  - {content: photos/b.png, style: wave}\n",
        )
    )
    assert main(["validate", str(manifest)]) == 2
    err = capsys.readouterr().err
    assert "'strpes' (did you mean stripes?)" in err and "'wave' (did you mean waves?)" in err


def test_gallery_of_a_folder_without_outputs_is_an_error(tmp_path, capsys):
    assert main(["gallery", str(tmp_path / "nowhere")]) == 2
    assert "no such folder" in capsys.readouterr().err and not (tmp_path / "nowhere").exists()
    (tmp_path / "empty").mkdir()
    assert main(["gallery", str(tmp_path / "empty")]) == 2  # an existing, empty folder is not "no such folder"
    assert (
        capsys.readouterr().err.strip()
        == f"nst: error: no stylized outputs in {tmp_path / 'empty'} (no sidecars, no summary.json); "
        "run nst run with this output first"
    )
    (tmp_path / "empty" / "x.txt").write_text("x")
    assert main(["gallery", str(tmp_path / "empty")]) == 2
    assert "no stylized outputs in" in capsys.readouterr().err


def test_run_refuses_an_output_root_it_cannot_write_before_starting(tmp_path, capsys):
    manifest = make_batch(tmp_path)
    (tmp_path / "blocker").write_text("a file")
    assert main(["run", str(manifest), "--output", str(tmp_path / "blocker" / "out")]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "cannot write there" in err and "Traceback" not in err


def test_run_summary_rows_agree_with_its_totals(prefect_server, tmp_path, capsys):
    manifest = make_batch(tmp_path)
    summary_path = tmp_path / "s.json"
    assert main(["run", str(manifest), "--summary-json", str(summary_path)]) == 0
    summary = json.loads(summary_path.read_text())
    assert summary["style_targets"] == {"computed": 2, "from_cache": 0}
    assert all(r["targets_computed"] == 1 and r["targets_cached"] == 0 for r in summary["pairs"])  # made by this run
    out = capsys.readouterr()
    assert "4 pairs planned: 4 produced" in out.out and "pair 4/4" in out.err and "ETA" in out.err
    assert "Finished in state" not in out.err  # Prefect's INFO lines stay out unless -v
    (tmp_path / "out" / "a__stripes.png").unlink()
    assert main(["run", str(manifest), "--summary-json", str(summary_path)]) == 0
    summary = json.loads(summary_path.read_text())
    assert summary["style_targets"] == {"computed": 0, "from_cache": 2}  # each style's task found its targets
    redone = next(r for r in summary["pairs"] if r["name"] == "a__stripes")
    assert redone["status"] == "produced" and redone["targets_cached"] == 1 and redone["targets_computed"] == 0


def test_run_reports_its_own_summary_not_the_one_on_disk(prefect_server, tmp_path, capsys, monkeypatch):
    """Another run on the same root may write summary.json meanwhile: ours comes from our flow run."""
    import nst_batch.flows.stylize_batch as flow_module

    def someone_elses(settings, summary):
        uri = str(tmp_path / "out" / "summary.json")
        Path(uri).write_text(
            json.dumps({"counts": {"planned": 9, "produced": 0, "skipped": 0, "failed": 9}, "failures": []})
        )
        return uri

    monkeypatch.setattr(flow_module, "write_summary", someone_elses)
    manifest = make_batch(tmp_path)
    assert main(["run", str(manifest)]) == 0
    assert "4 pairs planned: 4 produced, 0 skipped, 0 failed" in capsys.readouterr().out


def test_a_gallery_that_cannot_be_written_is_a_warning_in_the_summary(prefect_server, tmp_path, capsys, monkeypatch):
    import nst_batch.tasks.running.prefect_tasks as task_module
    from nst_batch.tasks.errors import StorageError

    def full_disk(root):
        raise StorageError(f"{root}/index.html: cannot write: No space left on device")

    monkeypatch.setattr(task_module, "build_gallery", full_disk)
    manifest = make_batch(tmp_path)
    assert main(["run", str(manifest)]) == 0
    summary = json.loads((tmp_path / "out" / "summary.json").read_text())
    assert summary["counts"]["produced"] == 4 and "No space left on device" in summary["warnings"][0]
    out = capsys.readouterr().out
    assert "warning: the gallery was not built" in out and "gallery: not built" in out


def test_run_and_validate_refuse_special_files_where_outputs_go_before_any_work(tmp_path, capsys):
    import os
    import stat

    manifest = make_batch(tmp_path)
    out = tmp_path / "out"
    out.mkdir()
    os.mkfifo(out / "a__waves.png")
    (out / "b__stripes.json").symlink_to("/dev/full")
    (out / "thumbs").write_text("a file where the thumbnails' folder goes")
    for command in (["run", str(manifest)], ["validate", str(manifest)]):
        assert main(command) == 2
        err = capsys.readouterr().err
        assert "a__waves.png exists and is a FIFO, not a regular file" in err
        assert "b__stripes.json exists and is a symbolic link" in err and "thumbs exists and is not a folder" in err
        assert "Traceback" not in err
    assert stat.S_ISFIFO(os.lstat(out / "a__waves.png").st_mode) and os.path.islink(out / "b__stripes.json")
    assert sorted(p.name for p in out.iterdir()) == ["a__waves.png", "b__stripes.json", "thumbs"]  # nothing written
    fifo = tmp_path / "summary.fifo"
    os.mkfifo(fifo)
    (out / "a__waves.png").unlink()
    (out / "b__stripes.json").unlink()
    (out / "thumbs").unlink()
    assert main(["run", str(manifest), "--summary-json", str(fifo)]) == 2
    assert "--summary-json" in capsys.readouterr().err and stat.S_ISFIFO(os.lstat(fifo).st_mode)


def test_validate_catches_what_the_run_would_trip_on(tmp_path, capsys):
    """A device this machine lacks, weights that are a folder, an empty style list: all at once."""
    manifest = make_batch(tmp_path)
    (tmp_path / "weights-dir").mkdir()
    manifest.write_text(
        manifest.read_text().replace("contents: [photos/*.png]\n", "")
        + "device: cuda:7\nweights: weights-dir\npairs:\n  - {content: photos/a.png, style: stripes}\n"
    )
    assert main(["validate", str(manifest)]) == 2
    err = capsys.readouterr().err
    assert "device: device 'cuda:7'" in err and "weights-dir: not a regular file" in err
    assert main(["run", str(manifest)]) == 2  # the run refuses them before any pair, the same way
    assert "device: device 'cuda:7'" in capsys.readouterr().err
    manifest.write_text(
        manifest.read_text()
        .replace("style: stripes", "style: []")
        .replace("device: cuda:7\n", "")
        .replace("weights: weights-dir\n", "")
    )
    assert main(["validate", str(manifest)]) == 2
    assert "pairs.0.style" in capsys.readouterr().err


def test_validate_decode_catches_a_truncated_photo_that_headers_pass(tmp_path, capsys):
    manifest = make_batch(tmp_path)
    photo = tmp_path / "photos" / "a.png"
    photo.write_bytes(photo.read_bytes()[: len(photo.read_bytes()) // 2])  # the header intact, the pixels cut off
    assert main(["validate", str(manifest)]) == 0
    capsys.readouterr()
    assert main(["validate", str(manifest), "--decode"]) == 2
    captured = capsys.readouterr()
    assert "a.png: truncated or corrupt image data" in captured.err and "decoded 4/4 images" in captured.err


def test_a_deployment_s_decode_check_fails_the_run_before_any_work(prefect_server, tmp_path):
    from nst_batch.flows.stylize_batch import stylize_batch

    manifest = make_batch(tmp_path)
    photo = tmp_path / "photos" / "b.png"
    photo.write_bytes(photo.read_bytes()[: len(photo.read_bytes()) // 2])
    state = stylize_batch(manifest=str(manifest), decode_check=True, return_state=True)
    assert state.is_failed() and "b.png: truncated or corrupt image data" in str(state.message)
    assert not list((tmp_path / "out").glob("*.png"))  # nothing was produced


def test_validate_refuses_an_empty_s3_object(tmp_path, capsys):
    import boto3

    from tests.flows.helpers import upload_batch
    from tests.s3_server import s3_server

    make_batch(tmp_path)
    with s3_server():
        s3 = boto3.client("s3")
        uri = upload_batch(s3, "bucket", tmp_path, "s3://bucket/out")
        s3.put_object(Bucket="bucket", Key="in/photos/empty.png", Body=b"")
        assert main(["validate", uri]) == 2
    assert "s3://bucket/in/photos/empty.png: empty object (0 bytes)" in capsys.readouterr().err


def test_a_bad_style_image_is_one_line_without_a_traceback(prefect_server, tmp_path):
    """In a process of its own, as a user runs it (in-process, Prefect's console handler may hold
    an earlier test's closed capture stream and print a logging error that is the harness's)."""
    import os
    import subprocess
    import sys

    from prefect.settings import PREFECT_API_URL

    manifest = make_batch(tmp_path)
    style = tmp_path / "styles" / "waves.png"
    style.write_bytes(style.read_bytes()[:300])  # a header that passes, pixels that do not decode
    done = subprocess.run(
        [sys.executable, "-m", "nst_batch.cli.main", "run", str(manifest)],
        capture_output=True,
        text=True,
        timeout=300,
        env={**os.environ, "PREFECT_API_URL": str(PREFECT_API_URL.value())},
    )
    assert done.returncode == 1, done.stderr[-3000:]
    assert (
        "FAILED 2 pairs (a__waves, b__waves): style: " in done.stdout
        and "truncated or corrupt image data" in done.stdout
    )
    assert "Traceback" not in done.stdout + done.stderr, (done.stdout + done.stderr)[-4000:]


def test_an_http_dask_address_is_one_line_and_no_traceback_at_exit(tmp_path):
    import subprocess
    import sys

    manifest = make_batch(tmp_path)
    done = subprocess.run(
        [sys.executable, "-m", "nst_batch.cli.main", "run", str(manifest), "--dask-address", "http://127.0.0.1:8787"],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 2
    assert done.stderr.strip().splitlines() == [
        "nst: error: --dask-address must be tcp://host:port (or tls, ucx, ws, wss), got "
        "'http://127.0.0.1:8787'; http:// is the dashboard's address, the scheduler's is tcp://host:8786"
    ]


def test_validate_shows_each_pairs_parameters_that_differ_from_the_defaults(tmp_path, capsys):
    manifest = make_batch(tmp_path)
    manifest.write_text(
        manifest.read_text().replace("waves: styles/waves.png}", "waves: {path: styles/waves.png, style_weight: 200}}")
    )
    assert main(["validate", str(manifest)]) == 0
    lines = {
        line.split("  <- ")[0].strip().rsplit("/", 1)[-1]: line
        for line in capsys.readouterr().out.splitlines()
        if "<-" in line
    }
    assert lines["a__waves.png"].endswith("x waves (size 32, iterations 2, scales 1, style_weight 200)")
    assert lines["a__stripes.png"].endswith("x stripes (size 32, iterations 2, scales 1)")
    assert main(["validate", str(manifest), "--json"]) == 0
    pairs = {p["name"]: p["parameters"] for p in json.loads(capsys.readouterr().out)["pairs"]}
    assert (
        pairs["a__waves"]["style_weight"] == 200 and pairs["a__stripes"]["pooling"] == "max"
    )  # every parameter, defaults too
    assert set(pairs["a__waves"]) == set(pairs["a__stripes"]) and len(pairs["a__waves"]) > 20


def test_validate_reports_five_independent_problems_in_one_pass(tmp_path, capsys):
    """Schema, a style name, a glob, a file, the output root: each was found only after the one
    before it was fixed (three runs for three problems); now one run lists them all, with lines."""
    make_batch(tmp_path)
    manifest = tmp_path / "five.yaml"
    manifest.write_text(
        "defaults: {size: 32, scales: [1.0], iterations: 2, sizee: 3}\n"  # 1 unknown key
        "output: out\n"
        "styles: {stripes: styles/stripes.png, gone: styles/missing.png}\n"  # 4 a missing file
        "pairs:\n"
        "  - {content: photos/a.png, style: strpes}\n"  # 2 an unknown style
        "  - {content: nothing/*.jpg, style: stripes}\n"  # 3 a glob with no image
        "  - {content: photos/b.png, style: gone}\n"
    )
    (tmp_path / "out").mkdir()
    (tmp_path / "out" / "thumbs").write_text("a file where a folder goes")  # 5 the output layout
    assert main(["validate", str(manifest)]) == 2
    err = capsys.readouterr().err
    assert "5 problems in the manifest" in err, err
    assert "defaults.sizee (line 1): unknown key" in err and "pairs.0.style (line 5): unknown style 'strpes'" in err
    assert "pairs.1.content" in err and "nothing/*.jpg" in err
    assert "styles.gone: " in err and "missing.png: no such file" in err
    assert "thumbs exists and is not a folder" in err


def test_nst_run_plans_once_and_its_flow_run_takes_that_plan(prefect_server, tmp_path, monkeypatch, capsys):
    """nst run plans and checks before Prefect starts; the flow run it starts uses that plan (a
    5.5 MB manifest took a minute to expand), carried by the flow it runs: nothing outlives it."""
    import nst_batch.tasks.planning.plan as plan_module

    calls = []
    real = plan_module.load_plan

    def counted(*args, **kwargs):
        calls.append(args[0])
        return real(*args, **kwargs)

    monkeypatch.setattr(plan_module, "load_plan", counted)  # prepare_run, the one preflight, looks it up there
    manifest = make_batch(tmp_path)
    assert main(["run", str(manifest)]) == 0
    assert calls == [str(manifest)]
    from nst_batch.flows.stylize_batch import stylize_batch

    assert stylize_batch(
        manifest=str(manifest), return_state=True
    ).is_completed()  # a run not started by nst run plans itself
    assert calls == [str(manifest), str(manifest)]
