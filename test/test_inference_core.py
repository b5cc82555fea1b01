"""IOSpec / proprio assembly, the latest-wins inference worker, and the portable engine."""

from __future__ import annotations

import threading
import time

import numpy as np
import pytest

from vla_adapter_ros.inference.io_spec import IOSpec, IOSpecError, build_proprio, io_from_checkpoint
from vla_adapter_ros.inference.worker import InferenceWorker, LatencyWindow


# ---- IOSpec -------------------------------------------------------------------------------------

def test_libero_spec_splits_arm_and_gripper_closure():
    spec = IOSpec()  # eef_delta, 7 columns, gripper in column 6, 1 = open (LIBERO data)
    actions = np.array([[0.1, 0.2, 0.3, 0.01, 0.02, 0.03, 1.0],
                        [0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0],
                        [0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.25],
                        [0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 1.7]])
    arm, closure = spec.split(actions)
    np.testing.assert_array_equal(arm[0], [0.1, 0.2, 0.3, 0.01, 0.02, 0.03])
    np.testing.assert_allclose(closure, [0.0, 1.0, 0.75, 0.0])  # clipped outside [open, closed]
    assert spec.arm_names[0] == "eef_dx" and spec.proprio_dim == 8


def test_action_scale_converts_to_si():
    spec = IOSpec(action_scale=[0.05, 0.05, 0.05, 0.5, 0.5, 0.5])
    arm, _ = spec.split(np.array([[1.0, -1.0, 0.5, 1.0, 0.0, -0.2, 0.0]]))
    np.testing.assert_allclose(arm, [[0.05, -0.05, 0.025, 0.5, 0.0, -0.1]])
    with pytest.raises(IOSpecError, match="action_scale needs 6 positive"):
        IOSpec(action_scale=[1.0, 1.0])
    with pytest.raises(IOSpecError, match="action_scale needs 6 positive"):
        IOSpec(action_scale=[1.0] * 5 + [0.0])


def test_joint_spec_without_gripper():
    spec = IOSpec(action_space="joint_position", action_dim=7, gripper_index=None, proprio_layout="joints")
    arm, closure = spec.split(np.ones((8, 7)))
    assert arm.shape == (8, 7) and closure is None
    assert spec.arm_names == [f"joint{i}" for i in range(1, 8)]


def test_negative_gripper_index_and_inverted_convention():
    spec = IOSpec(action_space="joint_position", action_dim=8, gripper_index=-1,
                  gripper_open_value=-1.0, gripper_closed_value=1.0, proprio_layout="joints_fingers")
    assert spec.gripper_index == 7
    _, closure = spec.split(np.array([[0.0] * 7 + [-1.0], [0.0] * 7 + [0.0], [0.0] * 7 + [1.0]]))
    np.testing.assert_allclose(closure, [0.0, 0.5, 1.0])


@pytest.mark.parametrize("kwargs, match", [
    (dict(action_space="cartesian"), "action_space must be one of"),
    (dict(dt=0.0), "dt must be a positive"),
    (dict(dt=float("nan")), "dt must be a positive"),
    (dict(proprio_layout="nope"), "proprio_layout must be one of"),
    (dict(gripper_index=9), "outside 0..6"),
    (dict(gripper_open_value=0.0), "must differ"),
    (dict(action_dim=8), "eef_delta needs 6 arm columns"),
    (dict(arm_names=["a", "b"]), "2 arm_names for 6"),
])
def test_inconsistent_specs_rejected(kwargs, match):
    with pytest.raises(IOSpecError, match=match):
        IOSpec(**kwargs)


def test_split_rejects_wrong_shapes():
    with pytest.raises(IOSpecError, match="expected chunk x 7"):
        IOSpec().split(np.zeros((8, 6)))


def test_build_proprio_layouts_exact_values():
    q = np.arange(7) * 0.1
    fingers = [0.04, 0.039]
    np.testing.assert_allclose(build_proprio("joints", q), q)
    np.testing.assert_allclose(build_proprio("joints_fingers", q, fingers), list(q) + fingers)
    np.testing.assert_allclose(build_proprio("joints_gripper_width", q, fingers), list(q) + [0.079])
    out = build_proprio("eef_axisangle_fingers", q, fingers, [0.3, 0.0, 0.5], [3.1, 0.0, 0.0])
    np.testing.assert_allclose(out, [0.3, 0.0, 0.5, 3.1, 0.0, 0.0, 0.04, 0.039])


@pytest.mark.parametrize("args, match", [
    (("joints", np.zeros(6)), "expected 7 arm joint positions"),
    (("joints_fingers", np.zeros(7)), "needs 2 finger positions"),
    (("eef_axisangle_fingers", np.zeros(7), [0, 0]), "needs the end-effector position"),
    (("joints_fingers", np.zeros(7), [0.0, float("nan")]), "non-finite"),
    (("joints_fingers", np.zeros(7), [0.0]), "expected 2 values"),
])
def test_build_proprio_errors(args, match):
    with pytest.raises(IOSpecError, match=match):
        build_proprio(*args)


# ---- worker -------------------------------------------------------------------------------------

def test_worker_latest_wins_and_reports_errors():
    gate = threading.Event()
    seen, results = [], []

    def run(request):
        seen.append(request)
        if request == "boom":
            raise RuntimeError("model exploded")
        gate.wait(5)
        return request * 2

    worker = InferenceWorker(run, lambda req, res, err: results.append((req, res, err)))
    try:
        worker.submit(1)
        deadline = time.monotonic() + 5
        while not seen and time.monotonic() < deadline:
            time.sleep(0.01)
        assert worker.busy
        worker.submit(2)
        worker.submit(3)  # replaces 2 while 1 is running
        assert worker.replaced == 1
        gate.set()
        assert worker.wait_idle(5)
        assert seen == [1, 3]
        assert [(r[0], r[1]) for r in results] == [(1, 2), (3, 6)]
        worker.submit("boom")
        assert worker.wait_idle(5)
        req, res, err = results[-1]
        assert req == "boom" and res is None and isinstance(err, RuntimeError)
        worker.submit(4)  # the thread survived the error
        assert worker.wait_idle(5) and results[-1][1] == 8
        assert len(worker.latency) == 4
    finally:
        worker.stop()
    assert not worker.submit(5)


def test_latency_window_percentiles():
    window = LatencyWindow(size=3)
    assert np.isnan(window.percentile(50))
    for value in (100.0, 1.0, 2.0, 3.0):  # 100 falls out of the window
        window.add(value)
    assert window.percentile(50) == 2.0 and window.percentile(100) == 3.0


# ---- engine -------------------------------------------------------------------------------------

def test_random_engine_predicts_like_the_model():
    pytest.importorskip("torch")
    from vla_adapter_ros.inference.engine import InferenceEngine

    engine = InferenceEngine.load(preset="tiny", device="cpu", seed=3)
    assert engine.random_weights and engine.model_id == "random-weights:tiny:seed3"
    assert (engine.chunk_len, engine.action_dim, engine.proprio_dim, engine.num_images) == (8, 7, 8, 2)
    rng = np.random.default_rng(1)
    images = [rng.integers(0, 256, (224, 224, 3), dtype=np.uint8) for _ in range(2)]
    proprio = rng.normal(size=8) * 0.1
    out = engine.predict(images, "lift the green cube", proprio)
    assert out.shape == (8, 7) and np.all(np.isfinite(out))
    # identity statistics: the engine returns exactly what the policy computes
    np.testing.assert_array_equal(out, engine.policy.predict(images, "lift the green cube", proprio))
    # same seed, same weights
    again = InferenceEngine.load(preset="tiny", device="cpu", seed=3)
    np.testing.assert_array_equal(out, again.predict(images, "lift the green cube", proprio))
    with pytest.raises(ValueError):
        engine.predict(images[:1], "lift the green cube", proprio)
    assert len(engine.warmup(iterations=1)) == 1


def test_engine_missing_checkpoint_is_a_clear_error(tmp_path):
    pytest.importorskip("torch")
    from vla_adapter_ros.inference.engine import InferenceEngine
    from vla_adapter_ros.model import CheckpointError

    with pytest.raises(CheckpointError, match="missing"):
        InferenceEngine.load(checkpoint=tmp_path / "missing", device="cpu")
    with pytest.raises(RuntimeError, match="CUDA is not available"):
        import torch

        if torch.cuda.is_available():
            pytest.skip("has CUDA")
        InferenceEngine.load(device="cuda")


def test_io_from_our_checkpoints_training_json(tmp_path):
    import json

    assert io_from_checkpoint(tmp_path) is None  # e.g. an official release: node parameters apply
    (tmp_path / "training.json").write_text(json.dumps({
        "step": 30, "action_space": "joint_position", "proprio_layout": "joints_fingers", "dt": 0.1,
        "gripper_index": 7, "gripper_open_value": 1.0, "gripper_closed_value": 0.0, "lora_rank": 64}))
    io = io_from_checkpoint(tmp_path)
    assert io == {"action_space": "joint_position", "dt": 0.1, "gripper_index": 7, "gripper_open_value": 1.0,
                  "gripper_closed_value": 0.0, "proprio_layout": "joints_fingers", "action_scale": []}
    spec = IOSpec(action_dim=8, **io)
    assert spec.arm_dim == 7 and spec.action_scale == [1.0] * 7
    (tmp_path / "training.json").write_text("{not json")
    with pytest.raises(IOSpecError, match="cannot read"):
        io_from_checkpoint(tmp_path)
    (tmp_path / "training.json").write_text('{"dt": 0.1}')
    with pytest.raises(IOSpecError, match="missing"):
        io_from_checkpoint(tmp_path)
