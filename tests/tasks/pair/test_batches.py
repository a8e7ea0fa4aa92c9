"""Batches through the tasks ring: which pairs share one (the shape buckets, the parameter set,
the setting and the memory guard), what a batched pair writes (its own output size, its share of
the time, the sidecar's ``batch``), and a batch that fails runs its pairs one at a time."""

from __future__ import annotations

import itertools
import json
from dataclasses import replace

import pytest
from PIL import Image

from nst_batch.tasks.pair import pipeline, produce, target_cache
from nst_batch.tasks.pair.kept_graphs import kept_graphs
from nst_batch.tasks.pair.pipeline import batch_size, batches, run_pairs
from nst_batch.tasks.pair.records import PairRow, Status
from nst_batch.tasks.planning.buckets import MAX_STRETCH, SNAP_PX, bucket_shape, distinct_shapes, working_shape
from nst_batch.tasks.planning.plan import load_plan
from tests.flows.helpers import save
from tests.synthetic import painting_like, photo_like

# 128 px: the size where a CPU batches (auto); 96 x 128 and 95 x 128 share the bucket 96 x 128.
TINY = "defaults: {size: 128, scales: [1.0], iterations: 3}\n"


def test_camera_photos_fall_into_a_handful_of_buckets():
    assert working_shape(3024, 4032, 512) == (384, 512) and working_shape(4000, 6000, 512) == (341, 512)
    assert bucket_shape(4000, 6000, 512) == (344, 512)  # 0.9 % stretch
    assert bucket_shape(2992, 4000, 512) == bucket_shape(3024, 4032, 512) == (384, 512)
    assert bucket_shape(6000, 4000, 512) == (512, 344)  # portrait
    assert bucket_shape(100, 4000, 512) == (13, 512)  # 16 would stretch 13 px by 23 %: its own bucket
    for h, w in [(3024, 4032), (4000, 6000), (1080, 1920), (1080, 1350), (2268, 4032), (3648, 5472)]:
        own, bucket = working_shape(h, w, 512), bucket_shape(h, w, 512)
        assert max(bucket) == 512 and abs(min(bucket) - min(own)) <= MAX_STRETCH * min(own)
        assert min(bucket) % SNAP_PX == 0 or bucket == own
    cameras = [
        (3024, 4032),
        (3000, 4000),
        (2992, 4000),
        (4000, 6000),
        (3648, 5472),
        (1080, 1920),
        (2160, 3840),
        (2268, 4032),
    ]
    assert distinct_shapes(cameras + [(w, h) for h, w in cameras], 512) == (
        8,
        6,
    )  # 384, 383, 341, 288 px; buckets 384, 344, 288


@pytest.fixture
def collection(tmp_path):
    save(photo_like(96, 128, seed=0), tmp_path / "photos" / "a.png")
    save(photo_like(95, 128, seed=1), tmp_path / "photos" / "b.png")  # the same bucket, a pixel shorter
    save(photo_like(96, 128, seed=2), tmp_path / "photos" / "c.png")
    save(photo_like(128, 96, seed=3), tmp_path / "photos" / "d.png")  # portrait: another bucket
    save(painting_like(64, 64), tmp_path / "styles" / "paint.png")
    return tmp_path


def _plan(root, extra: str = ""):
    (root / "m.yaml").write_text(TINY + extra + "styles: {paint: styles/paint.png}\ncontents: [photos/*.png]\n")
    return load_plan(str(root / "m.yaml"))


def _ready(plan):
    return [pipeline._prepare(p, plan.settings, False, None) for p in plan.pairs]


def test_the_working_shape_is_the_stylizers_own_output_shape():
    """buckets.py (pure Python, for the planner) rounds as the core's fit_size does: a bucket of the
    wrong shape would resample every output of a batch for nothing."""
    from nst_batch.core.image_ops import fit_size

    sizes = [
        (3024, 4032),
        (2992, 4000),
        (4000, 2992),
        (1080, 1920),
        (1, 5000),
        (333, 333),
        (7, 3),
        (4001, 2999),
        (513, 1025),
    ]
    for (h, w), size in itertools.product(sizes, (16, 64, 255, 256, 511, 512, 1023)):
        assert working_shape(h, w, size) == fit_size(h, w, size), (h, w, size)


def test_pairs_of_one_bucket_and_parameter_set_share_batches_up_to_the_setting(collection):
    plan = _plan(collection, "batch: 2\n")
    groups = batches(_ready(plan), plan.settings)
    names = [[r.pair.name for r in g] for g in groups]
    a, b, c, d = (p.name for p in plan.pairs)
    assert names == [[a, b], [c], [d]]  # in order; at most 2; the portrait alone
    (collection / "m.yaml").write_text(TINY + "batch: 1\nstyles: {paint: styles/paint.png}\ncontents: [photos/*.png]\n")
    one = load_plan(str(collection / "m.yaml"))
    assert all(len(g) == 1 for g in batches(_ready(one), one.settings))


def test_auto_batches_on_a_cpu_only_where_that_measured_faster(collection):
    plan = _plan(collection)
    cfg = plan.pairs[0].config
    assert batch_size(plan.settings, cfg, (96, 128)) == pipeline.AUTO_BATCH_CPU
    assert batch_size(plan.settings, replace(cfg, size=256), (192, 256)) == 1
    assert (
        batch_size(
            replace(plan.settings, runtime=replace(plan.settings.runtime, batch=3)), replace(cfg, size=256), (192, 256)
        )
        == 3
    )


def test_the_memory_guard_shrinks_a_batch(collection, monkeypatch):
    from nst_batch.core.memory import estimate_memory

    plan = _plan(collection, "batch: 8\n")
    cfg = plan.pairs[0].config
    two = estimate_memory(cfg, 96, 128, "cpu", batch=2).total
    monkeypatch.setenv("NST_MAX_MEMORY", str(two + 1))  # two fit, three do not
    assert batch_size(plan.settings, cfg, (96, 128)) == 2
    assert estimate_memory(cfg, 96, 128, "cpu", batch=3).total > two > estimate_memory(cfg, 96, 128, "cpu").total


def test_a_batch_writes_each_pair_as_its_own(collection):
    plan = _plan(collection, "batch: 4\n")
    done: list[tuple[int, str]] = []
    rows = run_pairs(plan.pairs, plan.settings, on_done=lambda i, row: done.append((i, row.status)))
    assert all(isinstance(r, PairRow) and r.status == Status.PRODUCED for r in rows)
    assert sorted(done) == [(0, Status.PRODUCED), (1, Status.PRODUCED), (2, Status.PRODUCED), (3, Status.PRODUCED)]
    sidecars = [json.loads((collection / "out" / f"{p.name}.json").read_text()) for p in plan.pairs]
    assert [s.get("batch") for s in sidecars] == [3, 3, 3, None]
    # each output has the size its photo has alone: b's 95 rows came back from the bucket's 96
    sizes = [Image.open(collection / "out" / f"{p.name}.png").size for p in plan.pairs]
    assert sizes == [(128, 96), (128, 95), (128, 96), (96, 128)]
    # a batched pair's wall time is its share, not the whole batch's
    batch_s = sidecars[0]["timings"]["stylize"] * 3
    assert (
        sidecars[0]["wall_time_s"] < batch_s + sum(v for k, v in sidecars[0]["timings"].items() if k != "stylize") + 1.0
    )
    again = run_pairs(plan.pairs, plan.settings)
    assert [r.status for r in again] == [Status.SKIPPED] * 4


def test_a_batch_that_fails_runs_its_pairs_alone(collection, monkeypatch):
    plan = _plan(collection, "batch: 4\n")

    def broken(*args, **kwargs):
        raise RuntimeError("CUDA out of memory (a stand-in)")

    monkeypatch.setattr(produce, "stylize_batch", broken)
    rows = run_pairs(plan.pairs, plan.settings)
    assert [r.status for r in rows] == [Status.PRODUCED] * 4
    assert all("batch" not in json.loads((collection / "out" / f"{p.name}.json").read_text()) for p in plan.pairs)


def test_a_pair_that_fails_alone_fails_alone(collection):
    (collection / "photos" / "b.png").write_bytes(b"\x89PNG\r\n\x1a\n" + b"\0" * 64)  # a broken PNG in the batch
    plan = _plan(collection, "batch: 4\n")
    rows = run_pairs(plan.pairs, plan.settings)
    assert [type(r).__name__ for r in rows] == ["PairRow", "PairFailed", "PairRow", "PairRow"]


def test_the_flow_chunks_a_buckets_pairs_side_by_side(collection):
    from nst_batch.tasks.running.scheduling import BATCH_CHUNK, bucket_keys, chunks

    save(photo_like(128, 96, seed=4), collection / "photos" / "0.png")  # a portrait first: the buckets interleave
    plan = _plan(collection)
    keys = bucket_keys(plan.pairs, plan.settings)
    names = [p.name.split("__")[0] for p in plan.pairs]
    assert names == ["0", "a", "b", "c", "d"] and len(set(keys)) == 2
    (chunk,) = chunks(list(plan.pairs), workers=4, buckets=keys)  # 5 pairs: one chunk of at least BATCH_CHUNK
    assert [p.name.split("__")[0] for p in chunk] == ["0", "d", "a", "b", "c"] and BATCH_CHUNK >= 5
    assert [len(c) for c in chunks(list(plan.pairs), workers=4)] == [1] * 5  # without buckets: as before
    assert bucket_keys(plan.pairs, replace(plan.settings, runtime=replace(plan.settings.runtime, batch=1))) is None


@pytest.mark.parametrize("value", ["-1", "65", "two"])
def test_a_batch_setting_out_of_range_is_a_manifest_problem(collection, value):
    from nst_batch.tasks.errors import ManifestError

    with pytest.raises(ManifestError, match="batch"):
        _plan(collection, f"batch: {value}\n")


def test_a_full_disk_under_a_batch_fails_its_pairs_and_runs_no_more(collection, monkeypatch):
    import errno

    from nst_batch.tasks.output.storage import local as storage
    from nst_batch.tasks.pair.done import reset_roots_down

    plan = _plan(collection, "batch: 2\n")
    out, real = str(collection / "out"), storage.write_atomic

    def full(path, data):
        if str(path).startswith(out) and str(path).endswith(".png"):
            raise OSError(errno.ENOSPC, "No space left on device")
        real(path, data)

    monkeypatch.setattr(storage, "write_atomic", full)
    try:
        rows = run_pairs(plan.pairs, plan.settings)
    finally:
        reset_roots_down()
    reasons = [str(r) for r in rows]
    assert all(type(r).__name__ == "PairFailed" for r in rows)
    assert "No space left" in reasons[0] and "No space left" in reasons[1]  # the batch's own pairs: the write's error
    assert all("not run" in r for r in reasons[2:])  # the next window was not computed


def test_a_styles_targets_stay_on_their_device_for_the_rest_of_the_run(collection, monkeypatch):
    plan = _plan(collection, "batch: 1\n")
    run1 = replace(plan.settings, run_id="run-1")
    reads: list[str] = []
    real = target_cache.get_or_compute_targets

    def counted(uri, *args, **kwargs):
        reads.append(uri)
        return real(uri, *args, **kwargs)

    monkeypatch.setattr(target_cache, "get_or_compute_targets", counted)
    target_cache.RESIDENT.clear()
    assert [r.status for r in run_pairs(plan.pairs, run1)] == [Status.PRODUCED] * 4
    assert len(reads) == 1  # the first pair made them; the other three used them where they were
    reads.clear()
    assert [r.status for r in run_pairs(plan.pairs, replace(plan.settings, run_id="run-2"), force=True)] == [
        Status.PRODUCED
    ] * 4
    assert len(reads) == 1  # another run reads the cache once more, and every pair counts it a hit
    hits = [
        json.loads((collection / "out" / f"{p.name}.json").read_text())["style_cache"][0]["hit"] for p in plan.pairs
    ]
    assert hits == [True] * 4
    reads.clear()
    run_pairs(plan.pairs, plan.settings, force=True)  # outside a flow run nothing is kept
    assert len(reads) == 4
    target_cache.RESIDENT.clear()


def test_the_next_windows_inputs_are_read_while_a_window_runs(collection, monkeypatch):
    """Window n+1's pairs are prepared (read, hashed, checked for done) on the read-ahead thread
    while window n's batch runs, one window ahead at most; results stay in plan order."""
    import threading

    plan = _plan(collection, "batch: 1\n")  # a window per pair
    real_prepare, real_run = pipeline._prepare, pipeline._run_batch
    prepared: list[tuple[str, str]] = []
    second_read = threading.Event()

    def prepare(pair, *args):
        prepared.append((pair.name, threading.current_thread().name))
        if pair is plan.pairs[1]:
            second_read.set()
        return real_prepare(pair, *args)

    def run(group, *args):
        if group[0].pair is plan.pairs[0]:  # the first window runs only once the second has been read
            assert second_read.wait(30), "the next window was not read while this one ran"
        assert len(prepared) <= plan.pairs.index(group[0].pair) + 2  # never more than one window ahead
        return real_run(group, *args)

    monkeypatch.setattr(pipeline, "_prepare", prepare)
    monkeypatch.setattr(pipeline, "_run_batch", run)
    rows = run_pairs(plan.pairs, plan.settings)
    assert [r.name for r in rows] == [p.name for p in plan.pairs] and all(r.status == Status.PRODUCED for r in rows)
    assert prepared[0][1] == threading.current_thread().name  # the first window: nothing to overlap with
    assert all(thread.startswith("nst-read-ahead") for _, thread in prepared[1:])
    assert not any(t.name.startswith("nst-read-ahead") for t in threading.enumerate())  # the reader ended with them


def test_a_photo_decoded_ahead_gives_the_same_image_and_is_decoded_once(collection, monkeypatch, tmp_path):
    """Where the pipeline decodes ahead (a GPU: pipeline.decodes_ahead), each photo is decoded once,
    on the read-ahead thread from the second window on, and the outputs are byte for byte those of
    a run that decodes in the batch; a photo that does not decode fails alone, before any work."""
    import shutil
    import threading

    plan = _plan(collection, "batch: 1\n")
    run_pairs(plan.pairs, plan.settings)
    expected = {p.name: (collection / "out" / f"{p.name}.png").read_bytes() for p in plan.pairs}
    shutil.rmtree(collection / "out")

    ahead: list[str] = []
    real_ahead, real_in_batch = pipeline.decode_content, produce.decode_content
    monkeypatch.setattr(pipeline, "decodes_ahead", lambda settings: True)
    monkeypatch.setattr(
        pipeline, "decode_content", lambda *a: ahead.append(threading.current_thread().name) or real_ahead(*a)
    )
    monkeypatch.setattr(produce, "decode_content", lambda *a: pytest.fail("decoded again in the batch"))
    rows = run_pairs(plan.pairs, plan.settings)
    assert all(r.status == Status.PRODUCED for r in rows)
    assert {p.name: (collection / "out" / f"{p.name}.png").read_bytes() for p in plan.pairs} == expected
    assert len(ahead) == len(plan.pairs) and all(t.startswith("nst-read-ahead") for t in ahead[1:])
    sidecar = json.loads((collection / "out" / f"{plan.pairs[1].name}.json").read_text())
    assert sidecar["timings"]["decode"] > 0  # the pair's decode time, though the device did not wait for it

    monkeypatch.setattr(produce, "decode_content", real_in_batch)
    (collection / "photos" / "b.png").write_bytes(b"\x89PNG\r\n\x1a\n" + b"\0" * 64)
    shutil.rmtree(collection / "out")
    broken = _plan(collection, "batch: 4\n")
    rows = run_pairs(broken.pairs, broken.settings)
    assert [type(r).__name__ for r in rows] == ["PairRow", "PairFailed", "PairRow", "PairRow"]


def test_a_buckets_batches_capture_each_scales_graph_once(tmp_path, monkeypatch):
    """The CUDA path forced on the CPU, with test_graphed_stepper's fake graphs (a replay sees
    only what is copied into the captured tensors): the second batch of a bucket replays the graph
    the first one captured, and writes what it writes with a graph of its own."""
    from nst_batch.core import optimize
    from tests.core.test_graphed_stepper import _FakeCuda

    fake = _FakeCuda()
    monkeypatch.setattr(optimize, "CUDA", fake)
    monkeypatch.setattr(optimize, "_on_cuda", lambda device: True)
    kept_graphs().clear()  # what earlier tests left on this thread
    outputs = []
    for root, kept, captures in ((tmp_path / "kept", kept_graphs, 1), (tmp_path / "own", lambda: None, 3)):
        monkeypatch.setattr(pipeline, "kept_graphs", kept)  # None: each batch's graphs go with it
        for i in range(4):
            save(photo_like(96, 128, seed=i), root / "photos" / f"p{i}.png")
        save(painting_like(64, 64), root / "styles" / "paint.png")
        (root / "m.yaml").write_text(
            "defaults: {size: 128, scales: [1.0], iterations: 8}\nbatch: 2\n"
            "styles: {paint: styles/paint.png}\ncontents: [photos/*.png]\n"
        )
        plan = load_plan(str(root / "m.yaml"))
        rows = run_pairs(plan.pairs, plan.settings)
        assert [r.status for r in rows if isinstance(r, PairRow)] == [Status.PRODUCED] * 4
        sidecars = [json.loads((root / "out" / f"{p.name}.json").read_text()) for p in plan.pairs]
        assert [s["batch"] for s in sidecars] == [2] * 4 and all(s["scales"][0]["graphed"] for s in sidecars)
        outputs.append([(root / "out" / f"{p.name}.png").read_bytes() for p in plan.pairs])
        assert fake.captures == captures  # two batches, one capture; then one per batch
    assert outputs[0] == outputs[1]
    kept_graphs().clear()
