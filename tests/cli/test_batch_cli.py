"""`nst validate`, `nst run` and `nst gallery`."""

import json

from nst_cli.main import main
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
    assert "defaults.sizee (line 3): unknown key" in err and "defaults.iterations.0 (line 4)" in err and "format (line 5)" in err


def test_run_success_failure_and_summary_json(prefect_server, tmp_path, capsys):
    manifest = make_batch(tmp_path, corrupt=True)
    summary_path = tmp_path / "summary-copy.json"
    assert main(["run", str(manifest), "--summary-json", str(summary_path)]) == 1
    out = capsys.readouterr().out
    assert "6 pairs planned: 4 produced, 0 skipped, 2 failed" in out and "FAILED broken__stripes" in out
    summary = json.loads(summary_path.read_text())
    assert summary["counts"]["failed"] == 2 and summary["failures"][0]["reason"]
    (tmp_path / "photos" / "broken.png").unlink()
    assert main(["run", str(manifest)]) == 0
    assert "4 pairs planned: 0 produced, 4 skipped, 0 failed" in capsys.readouterr().out


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
    assert page.count("<img") == 4 and "2 contents × 2 styles" in page
