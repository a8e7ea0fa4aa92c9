import pytest

from nst_batch.core import StyleConfig


def test_defaults_are_the_paper_layers():
    cfg = StyleConfig()
    assert cfg.content_layers == ("relu4_2",)
    assert cfg.style_layers == ("relu1_1", "relu2_1", "relu3_1", "relu4_1", "relu5_1")
    assert cfg.layers[-1] == "relu5_1"


def test_schedule_helpers():
    cfg = StyleConfig(size=512, scales=(0.25, 0.5, 1.0), iterations=(100, 50, 25), style_scale=0.5)
    assert cfg.sides() == (128, 256, 512)
    assert cfg.style_sides() == (64, 128, 256)
    assert cfg.iterations_per_scale() == (100, 50, 25)
    assert StyleConfig(scales=(0.5, 1.0), iterations=(7,)).iterations_per_scale() == (7, 7)
    assert StyleConfig(scales=(0.25, 0.5, 1.0), iterations=(9, 4)).iterations_per_scale() == (9, 4, 4)
    assert StyleConfig(scales=(1.0,), iterations=(9, 4)).iterations_per_scale() == (
        9,
    )  # a single scale is the coarsest
    assert StyleConfig().blend_weights(4) == (0.25, 0.25, 0.25, 0.25)
    assert StyleConfig(style_blend=(3, 1)).blend_weights(2) == (0.75, 0.25)


@pytest.mark.parametrize(
    "size, coarse, sides",
    [
        (512, 256, (256, 512)),
        (1024, 256, (256, 512, 1024)),
        (2048, 256, (256, 512, 1024, 2048)),
        (768, 256, (256, 512, 768)),  # the last step 1.5x
        (767, 256, (256, 767)),  # a step under 1.5x merges into the output size
        (384, 256, (256, 384)),
        (383, 256, (383,)),  # small outputs are one scale
        (128, 256, (128,)),
        (16, 256, (16,)),
        (600, 100, (100, 200, 400, 600)),
    ],
)
def test_default_scales_start_at_an_absolute_size(size, coarse, sides):
    cfg = StyleConfig(size=size, coarse_size=coarse)
    assert cfg.sides() == sides
    assert cfg.num_scales == len(sides)
    assert cfg.iterations_per_scale() == tuple(
        cfg.iterations[min(i, len(cfg.iterations) - 1)] for i in range(len(sides))
    )


def test_a_larger_output_shares_the_smaller_ones_coarse_scales():
    """What keeps the style from fading with size: a 2x output runs the 1x output's schedule, then refines."""
    for size in (512, 1024, 2048):
        small, large = StyleConfig(size=size), StyleConfig(size=2 * size)
        assert large.sides()[:-1] == small.sides()
        assert large.iterations_per_scale()[:-1] == small.iterations_per_scale()
        assert large.style_sides()[:-1] == small.style_sides()


def test_relative_scales_still_follow_the_size():
    cfg = StyleConfig(size=1024, scales=(0.5, 1.0), coarse_size=100)  # coarse_size is for the default scales only
    assert cfg.sides() == (512, 1024)


@pytest.mark.parametrize(
    "kwargs, message",
    [
        ({"size": 0}, "size must be"),
        ({"size": 10**6}, "size must be"),
        ({"scales": (1.0, 0.5)}, "strictly increasing"),
        ({"scales": (0.5,)}, "last scale must be 1, got 0.5"),
        ({"iterations": ()}, "iterations must have at least one entry"),
        ({"coarse_size": 8}, "coarse_size must be 16"),
        ({"iterations": (-1,)}, "iterations must be"),
        ({"content_weight": -1.0}, "content_weight must be"),
        ({"style_weight": float("nan")}, "style_weight must be"),
        ({"tv_weight": float("inf")}, "tv_weight must be"),
        ({"content_weight": 0.0, "style_weight": 0.0}, "cannot both be 0"),
        ({"style_layers": ("relu9_1",)}, "unknown VGG-19 layer"),
        ({"style_layer_weights": (1.0,)}, "style_layer_weights needs 5"),
        ({"style_blend": (0.0, 0.0)}, "positive sum"),
        ({"style_scale": 0.0}, "style_scale must be"),
        ({"pooling": "min"}, "pooling must be"),
        ({"init": "zeros"}, "init must be"),
        ({"seed": -1}, "seed must be"),
        ({"optimizer": "sgd"}, "optimizer must be"),
        ({"lbfgs_history": 0}, "lbfgs_history must be"),
        ({"early_stop_rtol": 1.5}, "early_stop_rtol"),
        ({"precision": "fp16"}, "precision must be"),
    ],
)
def test_out_of_range_values_are_refused(kwargs, message):
    with pytest.raises(ValueError, match=message):
        StyleConfig(**kwargs)


def test_all_problems_are_reported_together():
    with pytest.raises(ValueError, match="size must be.*pooling must be"):
        StyleConfig(size=0, pooling="min")


def test_the_core_raises_only_its_own_errors():
    """Callers tell the core's refusals from bugs by one root: every ``raise`` in nst_batch.core
    raises a CoreError subclass (PEP 562's module __getattr__ must raise AttributeError)."""
    import ast
    from pathlib import Path

    import nst_batch.core.errors as errors

    ours = {
        name for name, value in vars(errors).items() if isinstance(value, type) and issubclass(value, errors.CoreError)
    }
    others = []
    for path in sorted(Path(errors.__file__).parent.glob("*.py")):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Raise) and isinstance(node.exc, ast.Call) and isinstance(node.exc.func, ast.Name):
                name = node.exc.func.id
                if name not in ours and not (path.name == "__init__.py" and name == "AttributeError"):
                    others.append(f"{path.name}:{node.lineno} raises {name}")
    assert others == []


def test_a_config_has_one_json_form_that_round_trips():
    """to_json is what the plan's JSON, a pair's fingerprint and the sidecar hold: fields as
    dataclasses.asdict gives them, tuples as lists (so fingerprints made before it still match)."""
    import dataclasses

    cfg = StyleConfig(size=64, iterations=(30, 10), style_blend=(0.7, 0.3), preserve_color=True)
    assert cfg.to_json() == {k: list(v) if isinstance(v, tuple) else v for k, v in dataclasses.asdict(cfg).items()}
    assert StyleConfig.from_json(cfg.to_json()) == cfg
    assert StyleConfig.from_json({"size": 32}) == StyleConfig(size=32)


def test_the_scale_grammar_the_default_pyramid_and_values_as_written():
    from nst_batch.core.config import pyramid, scales_from, show
    from nst_batch.core.errors import ConfigError

    assert scales_from("auto") == () and scales_from(3) == (0.25, 0.5, 1.0) and scales_from("0.5, 1") == (0.5, 1.0)
    with pytest.raises(ConfigError, match="scales N"):
        scales_from("9")
    with pytest.raises(ConfigError, match="fractions of size"):
        scales_from("half")
    assert pyramid(512, 256) == (256, 512) and pyramid(2048, 256) == (256, 512, 1024, 2048)
    assert pyramid(128, 256) == (128,) and pyramid(520, 256) == (256, 520)
    assert show((0.5, 1.0)) == "0.5, 1" and show((-3,)) == "-3" and show(()) == "(none)" and show(2.5) == "2.5"
