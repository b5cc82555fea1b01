"""The LIBERO bridge's pure core: task names, image orientation, the official 8-d proprio, and the
action unit round trip model (controller units) -> policy node (SI, float32 ActionChunk) ->
bridge (controller units). Needs numpy only; the checks against a real LIBERO environment run the
`.venv-libero` interpreter in a subprocess and skip when it is absent."""

from __future__ import annotations

import json
import math
import os
import subprocess
from pathlib import Path

import numpy as np
import pytest

from vla_adapter_ros.inference.io_spec import LIBERO_ACTION_SCALE, LIBERO_IO, IOSpec, quaternion_to_axis_angle
from vla_adapter_ros.libero.core import (
    CONTROLLER_SCALE,
    SUITES,
    TaskSpec,
    controller_to_si,
    env_action,
    flip_image,
    hold_action,
    libero_proprio,
    parse_task_spec,
    si_to_controller,
    success_table,
)

REPO = Path(__file__).resolve().parents[1]
LIBERO_PYTHON = REPO / ".venv-libero" / "bin" / "python"


def test_task_specs():
    assert parse_task_spec("libero_spatial/3") == TaskSpec("libero_spatial", 3)
    assert parse_task_spec("libero_10:9") == TaskSpec("libero_10", 9)
    assert parse_task_spec("4", default_suite="libero_goal") == TaskSpec("libero_goal", 4)
    assert str(TaskSpec("libero_object", 2)) == "libero_object/2"
    assert [SUITES[s] for s in ("libero_spatial", "libero_object", "libero_goal", "libero_10")] == [220, 280, 300, 520]
    for bad in ("libero_nope/1", "libero_spatial/x", "", "spatial/-1"):
        with pytest.raises(ValueError):
            parse_task_spec(bad)


def test_flip_image_rotates_180_degrees():
    img = np.arange(2 * 3 * 3, dtype=np.uint8).reshape(2, 3, 3)
    out = flip_image(img)
    assert out.flags["C_CONTIGUOUS"]
    assert np.array_equal(out, np.rot90(img, 2, axes=(0, 1)))
    assert np.array_equal(out[0, 0], img[1, 2]) and np.array_equal(out[1, 2], img[0, 0])
    with pytest.raises(ValueError):
        flip_image(np.zeros((4, 4)))


def _quat_about_x(angle):
    return np.array([math.sin(angle / 2), 0.0, 0.0, math.cos(angle / 2)])


def test_proprio_layout_and_robosuite_axis_angle():
    """pos (3) + robosuite axis-angle (3) + fingers (2); robosuite keeps the quaternion's sign, so
    a rotation of pi + 0.2 about x (w < 0, as LIBERO's downward gripper often has) stays pi + 0.2."""
    pos, fingers = [0.1, -0.2, 1.1], [0.03, -0.03]
    out = libero_proprio(pos, _quat_about_x(math.pi + 0.2), fingers)
    assert out.shape == (8,)
    np.testing.assert_allclose(out, [0.1, -0.2, 1.1, math.pi + 0.2, 0, 0, 0.03, -0.03], atol=1e-12)
    # the shortest-angle convention gives the other representation of the same rotation
    np.testing.assert_allclose(quaternion_to_axis_angle(_quat_about_x(math.pi + 0.2)),
                               [-(math.pi - 0.2), 0, 0], atol=1e-12)
    # both agree when w >= 0; identity gives zeros
    q = np.array([0.2, -0.4, 0.1, 0.8])
    q /= np.linalg.norm(q)
    np.testing.assert_allclose(quaternion_to_axis_angle(q, shortest=False), quaternion_to_axis_angle(q), atol=1e-12)
    np.testing.assert_array_equal(libero_proprio([0, 0, 0], [0, 0, 0, 1], [0, 0])[3:6], np.zeros(3))


def test_proprio_on_a_recorded_libero_state():
    """A state read from LIBERO (libero_spatial/3, initial state 0, after the wait steps)."""
    quat = [0.99990563, -0.00721422, -0.0109996, -0.00396279]
    angle = 2 * math.acos(quat[3])
    axis = np.array(quat[:3]) / math.sqrt(1 - quat[3] ** 2)
    out = libero_proprio([-0.2031, -0.0109, 1.1761], quat, [0.0208, -0.0208])
    np.testing.assert_allclose(out[3:6], axis * angle, rtol=1e-12)
    assert out[3] > math.pi  # robosuite's convention, not the shortest angle


def test_action_scale_round_trip_is_exact_to_float32():
    """Model output in OSC_POSE units -> IOSpec (policy node, LIBERO preset) -> float32 ActionChunk
    -> bridge. The only loss is ActionChunk's float32."""
    assert tuple(CONTROLLER_SCALE) == LIBERO_ACTION_SCALE == (0.05, 0.05, 0.05, 0.5, 0.5, 0.5)
    rng = np.random.default_rng(0)
    model = np.concatenate([rng.uniform(-1, 1, (8, 6)), rng.uniform(0, 1, (8, 1))], axis=1)
    spec = IOSpec(action_dim=7, **LIBERO_IO)
    arm_si, closure = spec.split(model)
    np.testing.assert_allclose(arm_si[:, :3], model[:, :3] * 0.05, rtol=1e-15)
    np.testing.assert_allclose(arm_si[:, 3:], model[:, 3:6] * 0.5, rtol=1e-15)
    wire = arm_si.astype(np.float32)  # ActionChunk.actions
    back = np.array([si_to_controller(row) for row in wire.astype(np.float64)])
    np.testing.assert_allclose(back, model[:, :6], rtol=2 ** -23, atol=1e-12)
    np.testing.assert_allclose([si_to_controller(controller_to_si(r)) for r in model[:, :6]], model[:, :6],
                               rtol=1e-15, atol=0)
    np.testing.assert_allclose(closure, 1.0 - model[:, 6], rtol=1e-15)  # 1 = open in the data


def test_env_action_gripper_and_validation():
    """The official post-processing: model gripper g (1 = open) -> env +1 closed when g < 0.5; our
    closure is 1 - g, so closure > 0.5 -> +1."""
    np.testing.assert_allclose(env_action([0.05, 0, -0.025, 0, 0.5, 0, 0.9]), [1, 0, -0.5, 0, 1, 0, 1])
    assert env_action([0] * 6 + [0.1])[6] == -1.0
    np.testing.assert_array_equal(hold_action(1.0), [0, 0, 0, 0, 0, 0, 1.0])
    for bad in ([0] * 6, [0] * 6 + [float("nan")], [float("inf")] + [0] * 6):
        with pytest.raises(ValueError):
            env_action(bad)


def test_success_table_paper_format():
    table = success_table({"libero_spatial": 0.978, "libero_goal": 0.5})
    lines = table.splitlines()
    assert [c.strip() for c in lines[0].strip("|").split("|")] == ["Spatial", "Object", "Goal", "Long", "Avg"]
    assert [c.strip() for c in lines[2].strip("|").split("|")] == ["97.8", "-", "50.0", "-", "73.9"]


def _libero_env():
    if not LIBERO_PYTHON.is_file():
        pytest.skip("no .venv-libero (scripts/setup_libero.sh)")
    env = {k: v for k, v in os.environ.items() if k not in ("_ROS_WHEELS_BOOTSTRAP_COMPLETE", "LD_LIBRARY_PATH")}
    env.update(MUJOCO_GL="egl", PYOPENGL_PLATFORM="egl")
    return env


LIBERO_CHECK = r"""
import json, math, numpy as np
from vla_adapter_ros.libero.core import TaskSpec
from vla_adapter_ros.libero.episode import LiberoEpisode
ep = LiberoEpisode(image_size=64)
info = ep.reset(TaskSpec("libero_spatial", 3), init_state=0, max_steps=2)
raw = ep.raw_obs
obs = ep.last_obs
q = np.array(raw["robot0_eef_quat"], dtype=float)
den = math.sqrt(1 - q[3] ** 2)
official = np.concatenate([raw["robot0_eef_pos"], q[:3] * 2 * math.acos(q[3]) / den, raw["robot0_gripper_qpos"]])
print(json.dumps({
    "language": info.language,
    "flip_agentview": bool(np.array_equal(obs["agentview"], raw["agentview_image"][::-1, ::-1])),
    "flip_wrist": bool(np.array_equal(obs["wrist"], raw["robot0_eye_in_hand_image"][::-1, ::-1])),
    "shape": list(obs["agentview"].shape),
    "proprio_err": float(np.max(np.abs(obs["proprio"] - official))),
    "proprio": obs["proprio"].tolist(),
    "steps": [ep.step([0, 0, 0, 0, 0, 0, -1]) is not None, ep.step([0, 0, 0, 0, 0, 0, -1]) is not None],
    "done": ep.done, "counted": ep.steps,
}))
"""


@pytest.mark.slow
def test_observation_against_a_real_libero_env():
    env = _libero_env()
    out = subprocess.run([str(LIBERO_PYTHON), "-c", LIBERO_CHECK], capture_output=True, text=True, env=env,
                         cwd=REPO, timeout=240)
    assert out.returncode == 0, out.stderr[-3000:]
    result = json.loads(out.stdout.strip().splitlines()[-1])
    assert result["language"].startswith("pick up the black bowl")
    assert result["flip_agentview"] and result["flip_wrist"]
    assert result["shape"] == [64, 64, 3]
    assert result["proprio_err"] < 1e-12
    assert len(result["proprio"]) == 8
    assert result["done"] and result["counted"] == 2


def test_libero_launch_matches_libero_eval(monkeypatch):
    """launch/libero.launch.py (evaluated against stand-ins of the launch API) starts the node set of
    libero-eval with the same parameter files; every key it sets is declared by its node."""
    import importlib.util
    import sys
    import types

    import yaml

    pytest.importorskip("rclpy")
    ament = pytest.importorskip("ament_index_python.packages")

    def recorded(kind):
        def init(self, *args, **kwargs):
            self.args, self.kwargs = args, kwargs
        return type(kind, (), {"__init__": init})

    launch, actions, subs, handlers = (types.ModuleType(n) for n in ("launch", "launch.actions", "launch.substitutions",
                                                                       "launch.event_handlers"))
    launch_ros, ros_actions = types.ModuleType("launch_ros"), types.ModuleType("launch_ros.actions")
    launch.LaunchDescription = list
    actions.DeclareLaunchArgument, actions.OpaqueFunction = recorded("Declare"), recorded("Opaque")
    for name in ("RegisterEventHandler", "Shutdown", "LogInfo"):  # what launch_args.required uses
        setattr(actions, name, recorded(name))
    handlers.OnProcessExit, handlers.OnProcessIO = recorded("OnProcessExit"), recorded("OnProcessIO")
    subs.LaunchConfiguration = lambda name: types.SimpleNamespace(perform=lambda ctx: ctx[name])
    ros_actions.Node = recorded("Node")
    for name, module in {"launch": launch, "launch.actions": actions, "launch.substitutions": subs,
                         "launch.event_handlers": handlers,
                         "launch_ros": launch_ros, "launch_ros.actions": ros_actions}.items():
        monkeypatch.setitem(sys.modules, name, module)
    monkeypatch.setattr(ament, "get_package_share_directory", lambda package: str(REPO))
    spec = importlib.util.spec_from_file_location("libero_launch", REPO / "launch" / "libero.launch.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    entities = module.generate_launch_description()
    context = {e.args[0]: e.kwargs["default_value"] for e in entities if type(e).__name__ == "Declare"}
    context.update(task="libero_goal/2", libero_python="/py")
    nodes = {n.kwargs["name"]: n.kwargs for e in entities if type(e).__name__ == "Opaque"
             for n in e.kwargs["function"](context) if type(n).__name__ == "Node"}

    from vla_adapter_ros.libero.evaluate import node_specs

    specs = {s.name: s for s in node_specs("/py")}
    assert set(nodes) == set(specs)
    for name, node in nodes.items():
        assert (REPO / "scripts" / "nodes" / node["executable"]).is_file()
        files = [Path(p) for p in node["parameters"] if isinstance(p, str)]
        assert [f.name for f in files] == [p.name for p in specs[name].params]
        effective = {}
        for p in node["parameters"]:
            effective.update(yaml.safe_load(Path(p).read_text())[name]["ros__parameters"] if isinstance(p, str) else p)
        defaults = importlib.import_module(f"vla_adapter_ros.nodes.{name}").DEFAULTS
        assert set(effective) - {"use_sim_time"} <= set(defaults)
        if name == "libero_node":
            assert effective["task"] == "libero_goal/2" and node["prefix"] == "/py"
        if name == "executor_node":
            assert effective["output"] == "eef_delta" and effective["auto_enable"] is False
    assert "prefix" not in nodes["policy_node"]


def test_libero_eval_arguments(tmp_path):
    from vla_adapter_ros.libero.evaluate import ExternalPythonNodeSpec, checkpoints_by_suite

    a, b = tmp_path / "a", tmp_path / "b"
    a.mkdir(), b.mkdir()
    suites = ["libero_spatial", "libero_goal"]
    assert checkpoints_by_suite([], suites) == {"libero_spatial": "", "libero_goal": ""}
    assert checkpoints_by_suite([str(a)], suites) == {"libero_spatial": str(a), "libero_goal": str(a)}
    assert checkpoints_by_suite([f"libero_goal={b}", str(a)], suites) == {"libero_spatial": str(a),
                                                                           "libero_goal": str(b)}
    for bad in ([str(tmp_path / "missing")], [str(a), str(b)], [f"libero_nope={a}"]):
        with pytest.raises(ValueError):
            checkpoints_by_suite(bad, suites)
    argv = ExternalPythonNodeSpec("libero_node", "vla_adapter_ros.nodes.libero_node", python="/venv/bin/python").argv()
    assert argv[:3] == ["env", "-u", "_ROS_WHEELS_BOOTSTRAP_COMPLETE"] and argv[3].startswith("LD_LIBRARY_PATH=")
    assert argv[4:7] == ["/venv/bin/python", "-m", "vla_adapter_ros.nodes.libero_node"]


def test_policy_config_for_libero_matches_the_io_preset():
    """config/policy_libero.yaml = io_spec.LIBERO_IO, and the eef quaternion -> axis-angle
    convention of LIBERO's proprio (robosuite's; the shortest-angle one differs by ~2 pi there)."""
    import yaml

    params = yaml.safe_load((REPO / "config" / "policy_libero.yaml").read_text())["policy_node"]["ros__parameters"]
    for key, value in LIBERO_IO.items():
        if key == "gripper_index":
            assert params["has_gripper"] is True
        assert params[key] == value, key
    assert params["eef_axis_angle"] == "robosuite" and params["eef_pose_topic"] == "eef_pose"
    assert params["use_sim_time"] is True
