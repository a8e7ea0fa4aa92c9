"""The environment variables the tasks ring reads (nst_batch.tasks.environment): one table, one
way to read each, one error naming the variable; each is documented."""

import re
from pathlib import Path

import pytest

from nst_batch.tasks.environment import (
    DASK_NO_WORKERS_S,
    MAX_MEMORY,
    PAIRS_PER_GPU,
    THREADS,
    VARIABLES,
    byte_size,
    parsed,
    seconds,
    whole_number,
)
from nst_batch.tasks.errors import InputError

ROOT = Path(__file__).resolve().parents[2]


def test_each_variable_is_read_from_the_table_and_is_documented():
    names = {v.name for v in VARIABLES}
    spelled = {
        m for p in (ROOT / "nst_batch" / "tasks").rglob("*.py") for m in re.findall(r'"(NST_[A-Z_]+)"', p.read_text())
    }
    assert spelled == {n for n in names if n.startswith("NST_")}  # no variable read outside the table
    docs = "".join(p.read_text() for p in (ROOT / "docs").glob("*.md"))
    assert [n for n in sorted(names) if n not in docs] == []


@pytest.mark.parametrize(
    ("variable", "text", "value"),
    [
        (THREADS, " 4 ", 4),
        (THREADS, "0", 0),
        (PAIRS_PER_GPU, "3", 3),
        (DASK_NO_WORKERS_S, "7.5", 7.5),
        (MAX_MEMORY, "1.5g", 3 * 2**29),
    ],
)
def test_a_value_is_read_as_its_kind(variable, text, value):
    assert variable.read({variable.name: text}) == value


def test_unset_or_blank_is_none():
    assert THREADS.read({}) is None and THREADS.read({"NST_THREADS": "  "}) is None


@pytest.mark.parametrize(
    ("variable", "text", "message"),
    [
        (THREADS, "many", "NST_THREADS must be 0 (auto) or a whole number 1..1024, got 'many'"),
        (PAIRS_PER_GPU, "65", "NST_PAIRS_PER_GPU must be a whole number 1..64, got '65'"),
        (DASK_NO_WORKERS_S, "nan", "NST_DASK_NO_WORKERS_S must be a number of seconds > 0, got 'nan'"),
        (DASK_NO_WORKERS_S, "soon", "NST_DASK_NO_WORKERS_S must be a number of seconds, got 'soon'"),
        (MAX_MEMORY, "lots", "NST_MAX_MEMORY must be a size like 8G, 8GiB, 500M or a number of bytes, got 'lots'"),
    ],
)
def test_a_bad_value_is_one_line_naming_the_variable(variable, text, message):
    with pytest.raises(InputError) as info:
        variable.read({variable.name: text})
    assert str(info.value) == message and info.value.settings == (variable.name,)


def test_the_parsers_serve_flags_and_keys_in_the_same_words():
    with pytest.raises(InputError, match=r"^--dask-workers must be a whole number 1\.\.256, got '0'$"):
        parsed("--dask-workers", "0", whole_number(1, 256))
    assert byte_size("8GiB") == 8 * 2**30 and seconds("0.5") == 0.5
