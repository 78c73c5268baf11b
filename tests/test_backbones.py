"""Backbone registry: shapes, options, train/eval behaviour, to_static and inference export."""

from __future__ import annotations

import numpy as np
import paddle
import pytest
from paddle import inference
from paddle.static import InputSpec

from arcface_paddle.backbones import BACKBONES, build_backbone
from arcface_paddle.errors import ArcFaceError

IMAGE_SPEC = [InputSpec([None, 3, 112, 112], "float32", name="x")]


def faces(batch: int, seed: int = 0) -> paddle.Tensor:
    rng = np.random.default_rng(seed)
    return paddle.to_tensor(rng.uniform(-1, 1, (batch, 3, 112, 112)).astype(np.float32))


@pytest.mark.parametrize("name", sorted(BACKBONES))
def test_every_backbone_embeds_to_its_default_size(name):
    paddle.seed(0)
    model = build_backbone(name)
    model.eval()
    with paddle.no_grad():
        embedding = model(faces(2))
    expected = 128 if name == "MobileFaceNet_128" else 512
    assert embedding.shape == [2, expected]
    assert np.all(np.isfinite(embedding.numpy()))
    assert embedding.numpy().std() > 0


@pytest.mark.parametrize("name", ["FresResNet18", "MobileFaceNet"])
def test_embedding_size_is_configurable(name):
    model = build_backbone(name, embedding_size=64)
    model.eval()
    with paddle.no_grad():
        assert model(faces(3)).shape == [3, 64]


def test_registry_errors_name_the_problem():
    with pytest.raises(ArcFaceError, match=r"FresResNet50.*MobileFaceNet_128"):
        build_backbone("ResNet50")
    with pytest.raises(ArcFaceError, match=r"no option width.*dropout"):
        build_backbone("FresResNet50", width=2)
    with pytest.raises(ArcFaceError, match="128-D"):
        build_backbone("MobileFaceNet_128", embedding_size=512)


def test_iresnet_output_block_and_feature_bn_without_scale():
    model = build_backbone("FresResNet18", embedding_size=32, dropout=0.4)
    assert model.features.weight is None  # insightface fixes the embedding BN's scale at 1
    assert model.features.bias is not None
    assert model.dropout.p == 0.4
    assert model.fc.weight.shape == [512 * 7 * 7, 32]
    blocks = [len(stage) for stage in model.stages]
    assert blocks == [2, 2, 2, 2]


def test_dropout_and_batch_norm_follow_train_and_eval():
    paddle.seed(1)
    model = build_backbone("FresResNet18", embedding_size=16, dropout=0.5)
    x = faces(4, seed=2)
    mean_before = model.bn1._mean.numpy().copy()

    model.train()
    with paddle.no_grad():
        first, second = model(x).numpy(), model(x).numpy()
    assert not np.allclose(first, second)  # dropout draws a new mask per call
    assert not np.allclose(model.bn1._mean.numpy(), mean_before)  # running stats move

    model.eval()
    mean_after_train = model.bn1._mean.numpy().copy()
    with paddle.no_grad():
        third, fourth = model(x).numpy(), model(x).numpy()
    np.testing.assert_array_equal(third, fourth)
    np.testing.assert_array_equal(model.bn1._mean.numpy(), mean_after_train)


@pytest.mark.parametrize("name", ["FresResNet18", "MobileFaceNet"])
def test_to_static_equals_dynamic(name):
    paddle.seed(3)
    model = build_backbone(name)
    model.eval()
    x = faces(3, seed=4)
    with paddle.no_grad():
        dynamic = model(x).numpy()
        static = paddle.jit.to_static(model, input_spec=IMAGE_SPEC, full_graph=True)(x).numpy()
    np.testing.assert_allclose(static, dynamic, rtol=1e-5, atol=1e-5)


def test_jit_save_reloads_through_paddle_inference(tmp_path):
    paddle.seed(5)
    model = build_backbone("MobileFaceNet", embedding_size=128)
    model.eval()
    x = faces(5, seed=6)
    with paddle.no_grad():
        expected = model(x).numpy()
    prefix = tmp_path / "inference"
    paddle.jit.save(paddle.jit.to_static(model, input_spec=IMAGE_SPEC, full_graph=True),
                    str(prefix), input_spec=IMAGE_SPEC)

    config = inference.Config(str(prefix) + ".json", str(prefix) + ".pdiparams")
    config.disable_mkldnn()
    config.disable_glog_info()
    predictor = inference.create_predictor(config)
    handle = predictor.get_input_handle(predictor.get_input_names()[0])
    handle.copy_from_cpu(x.numpy())
    predictor.run()
    output = predictor.get_output_handle(predictor.get_output_names()[0]).copy_to_cpu()
    assert output.shape == (5, 128)
    np.testing.assert_allclose(output, expected, rtol=1e-5, atol=1e-5)
