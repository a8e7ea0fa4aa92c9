"""The benchmark's parts, and the whole of it on tiny synthetic images (its figures are not
asserted, only that every one is measured and reported)."""

import json
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from benchmarks.evaluator import Evaluator, gram_hw
from benchmarks.flops import conv_forward_flops, evaluation_flops
from benchmarks.processes import run_measured
from benchmarks.run import main as bench_main
from nst_batch.core.image_ops import resize
from tests.synthetic import blocks_like, painting_like, photo_like


def _save(tensor: torch.Tensor, path: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray((tensor[0].permute(1, 2, 0).numpy() * 255).round().astype(np.uint8)).save(path)
    return path


def test_flops_of_known_layers():
    assert conv_forward_flops(10, 20, "relu1_1") == 2 * 64 * 3 * 9 * 200
    # pool1 halves the sides: conv2_1 runs on 5x10.
    assert conv_forward_flops(10, 20, "conv2_1") - conv_forward_flops(10, 20, "pool1") == 2 * 128 * 64 * 9 * 50
    assert evaluation_flops(384, 512) == 2 * conv_forward_flops(384, 512)


def test_gram_hw_is_normalised_by_positions():
    feats = torch.ones(1, 3, 4, 5)
    assert torch.allclose(gram_hw(feats), torch.ones(3, 3))


def test_evaluator_scores_the_references_as_perfect(features):
    content, style = photo_like(48, 64), painting_like(48, 64)
    judge = Evaluator(features, content, style)
    d = judge(content)
    assert d.content == pytest.approx(0, abs=1e-6) and d.style > 0.1
    assert judge(resize(style, (48, 64))).style == pytest.approx(0, abs=1e-6)
    assert judge(blocks_like(48, 64)).content > 0.1


def test_peak_memory_of_a_child_is_its_own(tmp_path):
    measured = run_measured(
        [
            sys.executable,
            "-c",
            "import time; b = bytearray(300 * 2**20); b[::4096] = b'x' * len(b[::4096]); time.sleep(0.5); print('ok')",
        ]
    )
    assert measured.returncode == 0 and measured.stdout.strip() == "ok"
    assert 300 <= measured.peak_rss_mb < 600 and measured.wall_s > 0


@pytest.mark.slow
def test_tiny_benchmark_measures_and_reports_every_figure(tmp_path, capsys):
    images = tmp_path / "images"
    for i in range(3):
        _save(photo_like(48, 64, seed=i), images / "content" / f"photo{i}.png")
        _save(painting_like(40 + 8 * i, 48), images / "style" / f"paint{i}.png")
    out = tmp_path / "bench.json"
    code = bench_main(
        ["--profile", "tiny", "--images", str(images), "--workdir", str(tmp_path / "work"), "--json", str(out)]
    )
    printed = capsys.readouterr().out
    figures = json.loads(out.read_text())
    assert code == 0, {k: v for k, v in figures.items() if k.endswith("_error")}
    for key in ("per_eval_ratio", "bf16_time_ratio", "overhead_ratio"):
        assert figures[key] > 0, key
    assert "time_to_quality_ratio" in figures and figures["time_to_quality"]["trajectory"]
    assert set(figures["peak_rss_mb"]) == {"32", "48"}
    assert all(v["ours"] > 100 and v["pastiche"] > 100 for v in figures["peak_rss_mb"].values())
    assert figures["batch"]["pairs"] == 9 and figures["memory"]["largest_size_8GiB_cpu"] > 1000
    assert printed.count("\n| ") >= 8 and "| one evaluation" in printed and "pairs/hour" in printed


@pytest.mark.parametrize("profile", ["tiny", "quick", "full"])
def test_every_profiles_tiled_memory_run_has_a_valid_config(profile, tmp_path):
    """`nst bench --quick` once crashed in its memory section: 128-px tiles with the default 64-px overlap."""
    from benchmarks.sections import Settings, tiled_settings
    from nst_batch.core import StyleConfig

    _save(photo_like(48, 64), tmp_path / "content" / "a.png")
    _save(painting_like(40, 40), tmp_path / "style" / "b.png")
    size = max(Settings.make(profile, tmp_path, tmp_path / "work", False).memory_sizes)
    tiles = tiled_settings(size)
    assert (tiles is None) == (size // 2 < 128), (profile, size)  # the tiny sizes have no tiled run; the others do
    for tile, overlap in [tiles] if tiles is not None else []:
        cfg = StyleConfig(size=size, tile_size=tile, tile_overlap=overlap)  # an invalid pair raises ConfigError
        assert cfg.tiled(size, size) and overlap < tile / 2


def test_the_gpu_benchmark_runs_end_to_end_on_a_cpu(tmp_path):
    """scripts/gpu-check.sh's figures, at toy sizes on the CPU: every figure is measured."""
    from benchmarks.gpu import main as gpu_main

    _save(photo_like(48, 64), tmp_path / "images" / "content" / "tubingen.png")
    _save(painting_like(40, 40), tmp_path / "images" / "style" / "starry.png")
    out = tmp_path / "gpu.json"
    assert (
        gpu_main(
            [
                "--device",
                "cpu",
                "--images",
                str(tmp_path / "images"),
                "--sizes",
                "32",
                "--memory-sizes",
                "32",
                "--pair-size",
                "64",
                "--pair-iterations",
                "2",
                "--iterations",
                "2",
                "--reps",
                "1",
                "--pastiche-steps",
                "4",
                "--workdir",
                str(tmp_path / "w"),
                "--json",
                str(out),
            ]
        )
        == 0
    )
    figures = json.loads(out.read_text())
    assert (
        figures["evaluation_ms_32_fp32"] > 0
        and figures["iteration_ms_32_fp32"] > 0
        and figures["lbfgs_direction_ms_32"] > 0
    )
    assert (
        figures["pair"]["seconds"] > 0
        and figures["pastiche_ms_per_step"] > 0
        and figures["memory"][0]["estimate_mib"] > 0
    )


def test_the_quality_benchmark_judges_each_size_and_its_reference(tmp_path, capsys):
    from benchmarks.quality import main as quality_main

    _save(photo_like(48, 64), tmp_path / "images" / "content" / "photo.png")
    _save(painting_like(40, 40), tmp_path / "images" / "style" / "paint.png")
    out = tmp_path / "q.json"
    assert (
        quality_main(
            [
                "--images",
                str(tmp_path / "images"),
                "--sizes",
                "32,64",
                "--coarse-size",
                "32",
                "--pairs",
                "photo:paint",
                "--iterations",
                "3,2",
                "--reference-iterations",
                "4",
                "--device",
                "cpu",
                "--images-out",
                str(tmp_path / "png"),
                "--json",
                str(out),
            ]
        )
        == 0
    )
    rows = json.loads(out.read_text())["pairs"]["photo:paint"]
    assert set(rows) == {"32", "64"}
    assert rows["64"]["defaults"]["sides"] == [32, 64] and rows["64"]["defaults"]["iterations"] == [3, 2]
    assert rows["32"]["defaults"]["iterations"] == [3] and rows["64"]["reference"]["iterations"] == [4, 4]
    assert set(rows["64"]["defaults"]["judged"]) == {"64", "32"} and set(rows["32"]["defaults"]["judged"]) == {"32"}
    for run in (rows["32"]["defaults"], rows["64"]["defaults"], rows["64"]["reference"]):
        for judged in run["judged"].values():
            assert judged["content"] > 0 and 0 < judged["style_gain"] < 2
    assert len(list((tmp_path / "png").glob("*.png"))) == 4
    printed = capsys.readouterr().out
    assert "64 px at 32 px vs 32 px: style_gain" in printed and "64 px loss vs reference (8 its)" in printed


def test_the_quality_benchmark_runs_the_old_defaults_and_both_precisions_side_by_side(tmp_path, capsys, monkeypatch):
    import benchmarks.quality as quality

    monkeypatch.setitem(quality.BASELINE, "iterations", (4,))  # the real baseline's 500 iterations, shortened
    _save(photo_like(48, 64), tmp_path / "images" / "content" / "photo.png")
    _save(painting_like(40, 40), tmp_path / "images" / "style" / "paint.png")
    out = tmp_path / "q.json"
    assert (
        quality.main(
            [
                "--images",
                str(tmp_path / "images"),
                "--sizes",
                "32",
                "--coarse-size",
                "32",
                "--pairs",
                "photo:paint",
                "--iterations",
                "3",
                "--reference-iterations",
                "0",
                "--baseline",
                "--precisions",
                "fp32,bf16",
                "--device",
                "cpu",
                "--json",
                str(out),
            ]
        )
        == 0
    )
    runs = json.loads(out.read_text())["pairs"]["photo:paint"]["32"]
    assert set(runs) == {"baseline", "fp32", "bf16"}  # the defaults run once per precision
    assert (
        runs["baseline"]["iterations"] == [4]
        and runs["baseline"]["precision"] == "fp32"
        and runs["bf16"]["iterations"] == [3]
    )
    assert runs["bf16"]["precision"] == "bf16" and runs["fp32"]["evaluation_s"] > 0 and runs["bf16"]["evaluation_s"] > 0
    assert all(run["loss"] > 0 for run in runs.values())
    printed = capsys.readouterr().out
    assert "| photo:paint | 32 | [4] → [3] | fp32 → bf16 |" in printed and "evaluation s (fp32 / bf16)" in printed


def test_cluster_benchmark_counts_prefects_requests_and_judges_its_targets(tmp_path):
    from benchmarks.cluster import PrefectServer, small_manifest, table

    manifest = small_manifest(tmp_path, 8, 64, 30, "small")  # 2 photos x 4 styles of 64 px
    assert "{size: 64, scales: [1.0], iterations: 30}" in manifest.read_text()
    assert Image.open(next((tmp_path / "photos").iterdir())).size == (64, 64)

    server = PrefectServer.__new__(PrefectServer)  # its log only: no server started
    server.log = tmp_path / "server.log"
    server.log.write_text(
        'INFO:     127.0.0.1:1 - "POST /api/logs/ HTTP/1.1" 201\n'
        'INFO:     127.0.0.1:1 - "PATCH /api/artifacts/0f8e2f86-6f5c-4d57-9d58-8d7c3a1f3b11 HTTP/1.1" 204\n'
        'INFO:     127.0.0.1:1 - "PATCH /api/artifacts/1f8e2f86-6f5c-4d57-9d58-8d7c3a1f3b11 HTTP/1.1" 204\n'
    )
    assert server.requests() == {"POST /api/logs/": 1, "PATCH /api/artifacts/{id}": 2}

    run = {
        "workers": 1,
        "produced": 8,
        "flow_s": 10.0,
        "pairs_per_s": 0.8,
        "orchestration_worker_ms_per_pair": 50.0,
        "client_peak_rss_mb": 700,
    }
    results = {
        "throughput": [run, {**run, "workers": 2, "pairs_per_s": 1.2}],
        "speedup_2_workers": 1.5,
        "orchestration": {**run, "workers": 2},
        "plan": {"pairs": 1_000_000, "plan_s": 61.0, "plan_peak_rss_mb": 700},
        "prefect_load": {
            "task_runs_per_10k_pairs": 195,
            "http_requests_per_10k_pairs": 1600,
            "db_growth_mb_per_10k_pairs": 19.0,
        },
    }
    text = table(results)
    assert "1.5 missed (>= 1.7)" in text and "61.0 s (missed <= 60)" in text and "peak RSS 700 MB (met <= 1536)" in text


def test_the_gpu_check_dry_runs_on_a_cpu_and_writes_every_figure(tmp_path):
    """scripts/gpu-check.sh --cpu as the GPU machine would run it (imports first, then every
    section at tiny sizes): each figure's key is in the JSON, no section failed."""
    import json
    import os
    import subprocess
    import sys
    from pathlib import Path

    from benchmarks.gpu_check import BUDGETS, KEYS

    root = Path(__file__).resolve().parents[2]
    done = subprocess.run(
        ["bash", "scripts/gpu-check.sh", "--cpu"],
        cwd=root,
        capture_output=True,
        text=True,
        timeout=600,
        env={**os.environ, "OUT": str(tmp_path), "PYTHON": sys.executable},
    )
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    assert "import pastiche: 1.6.0" in done.stdout and "import nst_batch.tasks.pair.pipeline: ok" in done.stdout
    figures = json.loads((tmp_path / "gpu-cpu.json").read_text())
    assert set(KEYS) <= set(figures), set(KEYS) - set(figures)
    assert {f"{name}_seconds" for name in BUDGETS} <= set(figures)
    assert not [k for k in figures if k.endswith("_error") and k != "capture_error"], figures
    assert figures["replay_ms_512"] is None and figures["graphed"] is None  # no graph on a CPU, said so
    assert all(
        figures[f"pairs_per_hour_k{k}"]["pairs_per_hour"] > 0 and figures[f"pairs_per_hour_k{k}"]["k"] == k
        for k in (1, 2, 3)
    )
    batched, alone = figures["collection_batched"], figures["collection_one_at_a_time"]
    assert batched["pairs"] > 0 and alone["pairs"] > 0 and batched["batch"] == "auto" and alone["largest_batch"] == 1
    assert batched["largest_batch"] > 1  # 32-px pairs on a CPU batch (auto), so the batched path ran
    assert batched["setup_s_per_pair"] is not None and figures["memory_2048"]["estimate_mib"] > 0


def test_a_section_over_its_budget_is_interrupted_and_the_next_one_runs(tmp_path, monkeypatch):
    import json
    import time

    from benchmarks import gpu_check

    class Slow:
        def __init__(self, *args):
            pass

        def fast(self, deadline):
            gpu_check_results.put("fast_figure", 1)

        def slow(self, deadline):
            time.sleep(30)  # ignores its deadline

    gpu_check_results = gpu_check.Results(tmp_path / "gpu.json")
    monkeypatch.setattr(gpu_check, "Check", Slow)
    monkeypatch.setattr(gpu_check, "BUDGETS", {"slow": 1, "fast": 1})
    began = time.monotonic()
    failed = gpu_check.run(__import__("torch").device("cpu"), gpu_check.CPU, gpu_check_results)
    figures = json.loads((tmp_path / "gpu.json").read_text())
    assert failed == 1 and time.monotonic() - began < 10
    assert figures["slow_error"] == "OverBudget: over its budget of 1 s" and figures["fast_figure"] == 1


def test_each_gpu_figure_is_on_disk_as_soon_as_it_is_measured(tmp_path):
    import json

    from benchmarks.gpu_check import Results

    results = Results(tmp_path / "gpu.json")
    results.put("graphed", True)
    assert json.loads((tmp_path / "gpu.json").read_text()) == {"graphed": True}
    results.put("replay_ms_512", 2.1)
    assert json.loads((tmp_path / "gpu.json").read_text()) == {"graphed": True, "replay_ms_512": 2.1}


def test_side_by_side_timings_interleave_the_sides_rep_by_rep():
    from benchmarks.sections import interleaved_times

    order: list[str] = []
    timed = interleaved_times({"ours": lambda: order.append("a"), "theirs": lambda: order.append("b")}, reps=3)
    assert order == ["a", "b"] + ["a", "b"] * 3  # one warm-up each, then turn by turn
    assert set(timed) == {"ours", "theirs"} and all(t["min"] <= t["median"] for t in timed.values())


def test_the_gpu_check_fits_the_device_command_limit_and_brings_its_figures_back():
    """The device tool's command runs at most 600 s and brings back only what is under $OUT: the
    script's time limits (tests first, then the benchmark) add to 8 minutes at most, and the GPU
    run's JSON goes under $OUT; pydantic's typing-extensions is carried."""
    import re
    from pathlib import Path

    script = (Path(__file__).resolve().parents[2] / "scripts" / "gpu-check.sh").read_text()
    body = script[script.index("status=0") :]
    limits = [int(n) for n in re.findall(r"timeout (\d+) ", body)]
    gpu_limits = [limits[0], limits[-1]]  # pytest, then the GPU benchmark (the other one is --cpu's)
    assert sum(gpu_limits) <= 8 * 60 - 20, gpu_limits  # 20 s for the imports before them
    from benchmarks.gpu_check import BUDGETS, STARTUP_S

    assert sum(BUDGETS.values()) + STARTUP_S <= gpu_limits[1], (
        BUDGETS,
        gpu_limits,
    )  # every section's budget inside the limit
    assert body.index("pytest -m cuda") < body.index("benchmarks.gpu_check")
    assert '"$OUT/gpu-$(date +%F).json"' in body
    assert "typing-extensions==" in script
    assert '|| grep -q " skipped"' not in script  # a skipped line no longer hides a failure


def test_the_read_ahead_benchmark_times_both_modes_at_every_latency(tmp_path, capsys):
    """benchmarks.read_ahead at toy sizes: every pair produced in each mode (else it exits with
    the rows), each latency timed with the read-ahead off and on, the table printed."""
    import json

    from benchmarks.read_ahead import main as read_ahead

    out = tmp_path / "read_ahead.json"
    toy = ["--pairs", "2", "--size", "32", "--iterations", "2", "--latency", "0,0.05", "--reps", "1"]
    assert read_ahead([*toy, "--json", str(out)]) == 0
    rows = json.loads(out.read_text())["latency"]
    assert set(rows) == {"0.0", "0.05"}
    assert all(set(row["median_s"]) == {"off", "on"} and all(row["median_s"].values()) for row in rows.values())
    assert "| 0.05 |" in capsys.readouterr().out
