import pytest
import torch

from nst_core import StyleConfig
from tasks.memory_guard import TooLargeError, check_fits, memory_budget, parse_bytes


@pytest.mark.parametrize("text, expected", [("8G", 8 * 2**30), ("8GiB", 8 * 2**30), ("500m", 500 * 2**20), ("1.5g", int(1.5 * 2**30)), ("1024", 1024)])
def test_parse_bytes(text, expected):
    assert parse_bytes(text) == expected


def test_bad_budget_is_a_clear_error():
    with pytest.raises(ValueError, match="NST_MAX_MEMORY must be a size like 8G"):
        parse_bytes("lots")


def test_budget_comes_from_the_environment_or_the_machine(monkeypatch):
    monkeypatch.delenv("NST_MAX_MEMORY", raising=False)
    available, source = memory_budget(torch.device("cpu"))
    assert source == "RAM available" and 0 < available
    monkeypatch.setenv("NST_MAX_MEMORY", "3G")
    assert memory_budget(torch.device("cpu")) == (3 * 2**30, "NST_MAX_MEMORY=3G")


def test_check_fits(monkeypatch):
    monkeypatch.setenv("NST_MAX_MEMORY", "8G")
    check_fits(StyleConfig(size=1024), 768, 1024, torch.device("cpu"), "x.jpg")
    with pytest.raises(TooLargeError, match=r"x.jpg: a 4096x3072 px output .* use size \d+ or less, or a smaller lbfgs_history"):
        check_fits(StyleConfig(size=4096), 768, 1024, torch.device("cpu"), "x.jpg")
