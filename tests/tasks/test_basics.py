"""The small helpers every part of the tasks ring says or writes the same way (nst_batch.tasks.basics)."""

import hashlib
import json

from nst_batch.tasks.basics import json_bytes, plural, sha256_hex


def test_a_count_in_words():
    assert [plural(n, "pair") for n in (0, 1, 2)] == ["0 pairs", "1 pair", "2 pairs"]


def test_the_hash_is_sha256_in_hex():
    assert sha256_hex(b"abc") == hashlib.sha256(b"abc").hexdigest() and len(sha256_hex(b"")) == 64


def test_a_json_file_is_indented_and_ends_with_a_newline():
    data = json_bytes({"name": "café", "n": [1, 2]})
    assert data.endswith(b"}\n") and b'\n  "name"' in data and json.loads(data) == {"name": "café", "n": [1, 2]}
