"""RobotLimits loading and validation (config/robots/*.yaml)."""

import copy
import math

import numpy as np
import pytest
import yaml

from vla_adapter_ros.control.limits import RobotLimits, bundled_config_dir, load_robot_limits

FR3_Q_MIN = [-2.7437, -1.7837, -2.9007, -3.0421, -2.8065, 0.5445, -3.0159]
FR3_Q_MAX = [2.7437, 1.7837, 2.9007, -0.1518, 2.8065, 4.5169, 3.0159]
FR3_DQ_MAX = [2.62, 2.62, 2.62, 2.62, 5.26, 4.18, 5.26]
PANDA_Q_MIN = [-2.8973, -1.7628, -2.8973, -3.0718, -2.8973, -0.0175, -2.8973]
PANDA_Q_MAX = [2.8973, 1.7628, 2.8973, -0.0698, 2.8973, 3.7525, 2.8973]
READY = [0, -math.pi / 4, 0, -3 * math.pi / 4, 0, math.pi / 2, math.pi / 4]


def raw(robot="fr3"):
    with open(bundled_config_dir() / f"{robot}.yaml") as f:
        return yaml.safe_load(f)


def test_fr3_config_matches_hardware_tables():
    lim = load_robot_limits("fr3")
    assert lim.joint_names == tuple(f"fr3_joint{i}" for i in range(1, 8))
    np.testing.assert_allclose(lim.q_min, FR3_Q_MIN)
    np.testing.assert_allclose(lim.q_max, FR3_Q_MAX)
    np.testing.assert_allclose(lim.dq_max, FR3_DQ_MAX)
    np.testing.assert_allclose(lim.ddq_max, 10.0)
    np.testing.assert_allclose(lim.dddq_max, 5000.0)
    np.testing.assert_allclose(lim.start_pose, READY, atol=1e-12)


def test_panda_config_matches_hardware_tables():
    lim = load_robot_limits("panda")
    assert lim.joint_names == tuple(f"panda_joint{i}" for i in range(1, 8))
    np.testing.assert_allclose(lim.q_min, PANDA_Q_MIN)
    np.testing.assert_allclose(lim.q_max, PANDA_Q_MAX)
    np.testing.assert_allclose(lim.dq_max, [2.175] * 4 + [2.61] * 3)


@pytest.mark.parametrize("robot", ["fr3", "panda"])
def test_policy_margins_are_conservative(robot):
    lim = load_robot_limits(robot)
    assert np.all(lim.position_margin >= 0.1) and np.all(lim.position_margin <= 0.2)
    assert np.all(lim.v_max <= 0.3 * lim.dq_max + 1e-12)
    assert np.all(lim.v_max >= 0.1 * lim.dq_max - 1e-12)
    assert np.all(lim.a_max < lim.ddq_max) and np.all(lim.j_max < lim.dddq_max)
    assert np.all(lim.soft_q_min < lim.start_pose) and np.all(lim.start_pose < lim.soft_q_max)
    assert np.all(lim.v_max <= lim.max_step_rad / lim.control_dt + 1e-12)
    assert not lim.q_min.flags.writeable


def test_load_by_path(tmp_path):
    p = tmp_path / "x.yaml"
    d = raw()
    d["joint_names"] = [f"arm_{i}" for i in range(7)]
    p.write_text(yaml.safe_dump(d))
    assert load_robot_limits(p).joint_names[0] == "arm_0"
    with pytest.raises(ValueError, match="robot"):
        load_robot_limits("no_such_robot")


def test_scalar_expands_per_joint():
    d = raw()
    d["position_margin"] = 0.1
    lim = RobotLimits.from_dict(d)
    assert lim.position_margin.shape == (7,)


def mutate(key, value):
    d = copy.deepcopy(raw())
    if value is KeyError:
        del d[key]
    else:
        d[key] = value
    return d


BAD = [
    ("q_min", [0.0] * 6, "q_min"),
    ("q_max", [0.0] * 8, "q_max"),
    ("q_max", FR3_Q_MIN, "q_min/q_max"),
    ("dq_max", [2.62] * 6 + [-1.0], "dq_max"),
    ("ddq_max", 0.0, "ddq_max"),
    ("dddq_max", [5000.0] * 6 + [float("nan")], "dddq_max"),
    ("q_min", FR3_Q_MIN[:6] + [float("inf")], "q_min"),
    ("velocity_scale", 1.5, "velocity_scale"),
    ("velocity_scale", 0.0, "velocity_scale"),
    ("acceleration_scale", -0.1, "acceleration_scale"),
    ("jerk_scale", float("nan"), "jerk_scale"),
    ("jerk_scale", "fast", "jerk_scale"),
    ("max_step_rad", -0.001, "max_step_rad"),
    ("control_dt", 0.0, "control_dt"),
    ("position_margin", -0.1, "position_margin"),
    ("position_margin", 2.0, "position_margin"),
    ("workspace_min", [0.9, -0.6, 0.03], "workspace_min/workspace_max"),
    ("workspace_max", [0.9, 0.6], "workspace_max"),
    ("start_pose", [0.0] * 7, "start_pose"),
    ("start_pose", READY[:6], "start_pose"),
    ("start_tolerance", -1, "start_tolerance"),
    ("max_jump_rad", True, "max_jump_rad"),
    ("joint_state_timeout", KeyError, "joint_state_timeout"),
    ("chunk_max_age", None, "chunk_max_age"),
    ("joint_names", ["a"] * 7, "joint_names"),
    ("joint_names", [], "joint_names"),
    ("joint_names", KeyError, "joint_names"),
    ("q_min", "abc", "q_min"),
    ("velocity_scal", 0.2, "velocity_scal"),
]


@pytest.mark.parametrize("key,value,named", BAD, ids=[f"{k}-{i}" for i, (k, _, _) in enumerate(BAD)])
def test_validation_names_the_bad_key(key, value, named):
    with pytest.raises(ValueError) as info:
        RobotLimits.from_dict(mutate(key, value))
    assert str(info.value).startswith(named), str(info.value)


def test_joint_names_length_drives_array_lengths():
    d = raw()
    d["joint_names"] = d["joint_names"][:6]
    with pytest.raises(ValueError, match="^q_min"):
        RobotLimits.from_dict(d)


def test_yaml_top_level_must_be_mapping(tmp_path):
    p = tmp_path / "bad.yaml"
    p.write_text("- 1\n- 2\n")
    with pytest.raises(ValueError, match="mapping"):
        RobotLimits.from_yaml(p)
