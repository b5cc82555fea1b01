"""Image decoding, input synchronisation and instruction validation (no ROS)."""

from __future__ import annotations

import array

import numpy as np
import pytest

from vla_adapter_ros.observation import (
    ImageDecodeError,
    InputRejected,
    InstructionError,
    ObservationAssembler,
    ObservationRefused,
    decode_compressed,
    decode_image,
    encode_compressed,
    encode_rgb,
    validate_instruction,
)

RNG = np.random.default_rng(0)
RGB = RNG.integers(0, 256, size=(5, 7, 3), dtype=np.uint8)


# ---- images -------------------------------------------------------------------------------------

@pytest.mark.parametrize("encoding", ["rgb8", "bgr8", "rgba8", "bgra8"])
def test_color_encodings_decode_to_the_same_rgb(encoding):
    height, width, step, data = encode_rgb(RGB, encoding)
    out = decode_image(encoding, height, width, step, data)
    assert out.dtype == np.uint8 and out.flags.c_contiguous
    np.testing.assert_array_equal(out, RGB)


def test_bgr_bytes_are_swapped():
    # one pixel, stored B=1 G=2 R=3
    out = decode_image("bgr8", 1, 1, 3, bytes([1, 2, 3]))
    assert out.tolist() == [[[3, 2, 1]]]
    out = decode_image("bgra8", 1, 1, 4, bytes([1, 2, 3, 4]))
    assert out.tolist() == [[[3, 2, 1]]]


def test_mono8_replicates_gray():
    out = decode_image("mono8", 1, 2, 2, bytes([10, 200]))
    assert out.tolist() == [[[10, 10, 10], [200, 200, 200]]]


def test_row_padding_is_skipped():
    # 2x2 rgb8 with 2 bytes of padding per row (step 8)
    data = bytes([1, 2, 3, 4, 5, 6, 99, 99, 7, 8, 9, 10, 11, 12, 99, 99])
    out = decode_image("rgb8", 2, 2, 8, data)
    assert out.reshape(-1).tolist() == [1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12]


def test_accepts_array_and_memoryview_buffers():
    height, width, step, data = encode_rgb(RGB)
    for buf in (bytearray(data), memoryview(data), array.array("B", data)):
        np.testing.assert_array_equal(decode_image("rgb8", height, width, step, buf), RGB)


@pytest.mark.parametrize(
    "args, match",
    [
        (("yuv422", 2, 2, 4, bytes(8)), "unsupported image encoding 'yuv422'"),
        (("rgb8", 2, 2, 6, bytes(11)), "needs 12 bytes, got 11"),
        (("rgb8", 2, 2, 5, bytes(10)), "shorter than width"),
        (("rgb8", 0, 2, 6, b""), "no pixels"),
        (("16UC1", 2, 2, 4, bytes(8)), "unsupported"),
    ],
)
def test_malformed_images_raise_clear_errors(args, match):
    with pytest.raises(ImageDecodeError, match=match):
        decode_image(*args)


# ---- compressed images (sensor_msgs/CompressedImage) -----------------------------------------------

SMOOTH = np.stack(np.meshgrid(np.arange(64), np.arange(48)), axis=-1).sum(axis=-1, keepdims=True)
SMOOTH = np.concatenate([SMOOTH * 2, SMOOTH, 255 - SMOOTH * 2], axis=2).clip(0, 255).astype(np.uint8)


@pytest.mark.parametrize("fmt", ["jpeg", "bgr8; jpeg compressed bgr8", "rgb8; jpeg compressed bgr8", ""])
def test_jpeg_decodes_to_rgb_in_the_right_order(fmt):
    out = decode_compressed(fmt, encode_compressed(SMOOTH, "jpeg", quality=95))
    assert out.shape == (48, 64, 3) and out.dtype == np.uint8 and out.flags.c_contiguous
    assert np.abs(out.astype(int) - SMOOTH).mean() < 3  # lossy, but no channel swap


def test_png_is_lossless_and_accepts_ros_buffers():
    data = encode_compressed(SMOOTH, "png")
    for buffer in (data, bytearray(data), array.array("B", data), memoryview(data)):
        np.testing.assert_array_equal(decode_compressed("png", buffer), SMOOTH)


def test_mono_png_becomes_gray_rgb():
    import io

    from PIL import Image as PILImage

    out = io.BytesIO()
    PILImage.fromarray(SMOOTH[..., 1]).save(out, format="PNG")
    rgb = decode_compressed("mono8; png compressed mono8", out.getvalue())
    np.testing.assert_array_equal(rgb, np.repeat(SMOOTH[..., 1:2], 3, axis=2))


@pytest.mark.parametrize(
    "fmt, data, match",
    [
        ("jpeg", b"", "has no data"),
        ("jpeg", b"not an image", "neither JPEG nor PNG"),
        ("jpeg", b"\xff\xd8\xff\xe0 garbage", "cannot decode compressed jpeg image"),
        ("png", b"\x89PNG\r\n\x1a\n" + bytes(20), "cannot decode compressed png image"),
        ("16UC1; compressedDepth", b"\x89PNG\r\n\x1a\n", "unsupported compressed image format"),
    ],
)
def test_bad_compressed_data_raises_clear_errors(fmt, data, match):
    with pytest.raises(ImageDecodeError, match=match):
        decode_compressed(fmt, data)


def test_truncated_and_oversized_compressed_images_are_refused():
    data = encode_compressed(SMOOTH, "jpeg")
    with pytest.raises(ImageDecodeError, match="cannot decode"):
        decode_compressed("jpeg", data[: len(data) // 2])
    with pytest.raises(ImageDecodeError, match="more than 32 px per side"):
        decode_compressed("jpeg", data, max_side=32)  # from the header, before decoding


def test_decoded_compressed_image_takes_the_raw_image_path():
    a = ObservationAssembler(["cam"], ["joints"], image_size=(48, 64))
    a.add_image("cam", 1.0, decode_compressed("jpeg", encode_compressed(SMOOTH)))
    with pytest.raises(InputRejected, match="image is 32x16, expected 64x48"):
        a.add_image("cam", 1.1, decode_compressed("png", encode_compressed(SMOOTH[:16, :32], "png")))


# ---- synchronisation ----------------------------------------------------------------------------

def _assembler(**kw):
    return ObservationAssembler(["agentview", "wrist"], ["joints"], max_skew=0.05, max_age=0.2,
                                state_sizes={"joints": 7}, **kw)


def _img(value=0, size=(32, 32)):
    return np.full(size + (3,), value, dtype=np.uint8)


def _fill(a, t_cam=10.0, t_wrist=10.0, t_joints=10.0):
    a.add_image("agentview", t_cam, _img(1))
    a.add_image("wrist", t_wrist, _img(2))
    a.add_state("joints", t_joints, np.arange(7.0))


def test_complete_fresh_inputs_give_an_observation():
    a = _assembler()
    _fill(a, 10.00, 10.03, 10.01)
    obs = a.assemble(now=10.1)
    assert obs.stamp == 10.00  # the reference (first) camera's stamp
    assert [int(i[0, 0, 0]) for i in obs.images] == [1, 2]
    np.testing.assert_array_equal(obs.state["joints"], np.arange(7.0))
    assert obs.ages["agentview"] == pytest.approx(0.1) and obs.ages["wrist"] == pytest.approx(0.07)


def test_missing_input_is_named():
    a = _assembler()
    a.add_image("agentview", 10.0, _img())
    with pytest.raises(ObservationRefused, match="no data yet from wrist, joints"):
        a.assemble(10.0)


def test_stale_camera_refused_with_its_age():
    a = _assembler()
    _fill(a, t_cam=9.7, t_wrist=9.72, t_joints=10.0)
    with pytest.raises(ObservationRefused, match=r"stale input: agentview \(300 ms\), wrist \(280 ms\)"):
        a.assemble(10.0)


def test_camera_skew_refused():
    a = _assembler()
    _fill(a, t_cam=10.0, t_wrist=10.08)
    with pytest.raises(ObservationRefused, match="cameras out of sync: stamps spread 80 ms > 50 ms"):
        a.assemble(10.1)


def test_previous_matching_frames_used_while_one_camera_lags():
    a = _assembler()
    a.add_state("joints", 10.1, np.arange(7.0))
    a.add_image("agentview", 10.0, _img(1))
    a.add_image("wrist", 10.0, _img(2))
    a.add_image("agentview", 10.1, _img(3))  # the wrist frame of 10.1 is still on its way
    obs = a.assemble(10.12)
    assert obs.stamp == pytest.approx(10.0)
    assert obs.images[0][0, 0, 0] == 1 and obs.images[1][0, 0, 0] == 2  # the matching pair, not the newest
    assert obs.ages["agentview"] == pytest.approx(0.12) and obs.ages["joints"] == pytest.approx(0.02)
    a.add_image("wrist", 10.1, _img(4))
    obs = a.assemble(10.12)
    assert obs.stamp == pytest.approx(10.1) and obs.images[0][0, 0, 0] == 3 and obs.images[1][0, 0, 0] == 4


def test_no_matching_pair_in_history_is_refused():
    a = _assembler()
    a.add_state("joints", 10.2, np.arange(7.0))
    a.add_image("wrist", 10.0, _img())
    for t in (10.1, 10.2):
        a.add_image("agentview", t, _img())
    with pytest.raises(ObservationRefused, match="cameras out of sync: stamps spread 200 ms"):
        a.assemble(10.2)


def test_future_stamps_refused():
    a = _assembler()
    _fill(a, 11.0, 11.0, 11.0)
    with pytest.raises(ObservationRefused, match="in the future"):
        a.assemble(10.0)


def test_slightly_future_stamps_accepted():
    """Under simulated time the data can arrive before the clock message that covers it."""
    a = _assembler()
    _fill(a, 10.1, 10.1, 10.1)
    assert a.assemble(10.0).stamp == 10.1


def test_latest_wins_and_out_of_order_dropped():
    a = _assembler()
    _fill(a)
    a.add_image("agentview", 10.02, _img(7))
    with pytest.raises(InputRejected, match="out of order"):
        a.add_image("agentview", 10.01, _img(9))
    assert a.out_of_order == 1
    assert a.assemble(10.05).images[0][0, 0, 0] == 7


@pytest.mark.parametrize("values, match", [
    ([0.0] * 6 + [float("nan")], "non-finite"),
    ([0.0] * 6 + [float("inf")], "non-finite"),
    ([0.0] * 6, "expected 7 values, got 6"),
])
def test_bad_states_rejected(values, match):
    a = _assembler()
    with pytest.raises(InputRejected, match=match):
        a.add_state("joints", 10.0, values)
    assert "joints" not in {k for k, v in a.ages(10.0).items() if v is not None}


@pytest.mark.parametrize("image, match", [
    (np.zeros((32, 32, 3), np.float32), "expected HxWx3 uint8"),
    (np.zeros((32, 32), np.uint8), "expected HxWx3 uint8"),
    (np.zeros((8, 32, 3), np.uint8), "outside 16..4096"),
])
def test_bad_images_rejected(image, match):
    with pytest.raises(InputRejected, match=match):
        _assembler().add_image("wrist", 1.0, image)


def test_configured_image_size_enforced():
    a = _assembler(image_size=(32, 32))
    a.add_image("wrist", 1.0, _img())
    with pytest.raises(InputRejected, match="image is 48x32, expected 32x32"):
        a.add_image("wrist", 1.1, _img(size=(32, 48)))


def test_unknown_inputs_and_bad_configs():
    a = _assembler()
    with pytest.raises(InputRejected, match="unknown camera"):
        a.add_image("side", 1.0, _img())
    with pytest.raises(InputRejected, match="not finite"):
        a.add_image("wrist", float("nan"), _img())
    with pytest.raises(ValueError):
        ObservationAssembler([], ["joints"])
    with pytest.raises(ValueError):
        ObservationAssembler(["a", "a"], [])


# ---- instructions -------------------------------------------------------------------------------

def test_instruction_cleanup():
    assert validate_instruction("  pick up   the red cube ") == "pick up the red cube"
    assert validate_instruction("Put the bowl on the plate") == "Put the bowl on the plate"


@pytest.mark.parametrize("text, match", [
    ("", "empty"),
    ("   ", "empty"),
    ("a" * 257, "257 characters long; the limit is 256"),
    ("pick\nup", "non-printable"),
    ("pick\x00up", "non-printable"),
    ("pick\u200bup", "non-printable"),
    (None, "must be a string"),
])
def test_bad_instructions_refused(text, match):
    with pytest.raises(InstructionError, match=match):
        validate_instruction(text)
