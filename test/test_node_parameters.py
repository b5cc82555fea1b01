"""Node parameters as `ros2 param` sees them, with a real parameter client against real node processes:
every parameter is described (description, range, read-only), start-up-only ones refuse a change
(dry_run above all), live ones change the running node, invalid values are refused with a reason, and a
parameter the node does not declare (a typo) stops it at start with one line naming the closest one."""

from __future__ import annotations

import importlib
import sys

import pytest

rclpy = pytest.importorskip("rclpy")

from rclpy.executors import SingleThreadedExecutor  # noqa: E402
from rclpy.parameter import Parameter, parameter_value_to_python  # noqa: E402
from rclpy.parameter_client import AsyncParameterClient  # noqa: E402

from ros_harness import spin_until  # noqa: E402

pytestmark = [pytest.mark.ros]

NODES = ("executor_node", "policy_node", "sim_node", "recorder_node", "libero_node")


# ------------------------------------------------------------------------------ declarations (no process)
@pytest.mark.parametrize("name", NODES)
def test_every_parameter_has_a_description_and_valid_default(name):
    module = importlib.import_module(f"vla_adapter_ros.nodes.{name}")
    assert set(module.PARAMETERS) == set(module.DEFAULTS)
    for key, spec in module.PARAMETERS.items():
        assert len(spec.description) > 10, key
        default = module.DEFAULTS[key]
        if spec.range is not None:
            assert isinstance(default, (int, float)) and not isinstance(default, bool), key
            assert type(spec.range[0]) is type(default) and spec.range[0] <= default <= spec.range[1], key
        if spec.choices is not None:
            assert default in spec.choices, key


def test_bundled_parameter_files_fit_the_ranges_and_choices():
    """A range or choice list that refuses a bundled configuration would stop that node at start-up."""
    from pathlib import Path

    import yaml

    config = Path(__file__).resolve().parents[1] / "config"
    checked = 0
    for path in sorted(config.rglob("*.yaml")):
        data = yaml.safe_load(path.read_text())
        for node, section in (data or {}).items() if isinstance(data, dict) else []:
            if node not in NODES or not isinstance(section, dict):
                continue
            specs = importlib.import_module(f"vla_adapter_ros.nodes.{node}").PARAMETERS
            for key, value in (section.get("ros__parameters") or {}).items():
                spec = specs.get(key)
                if spec is None:
                    continue
                checked += 1
                if spec.range is not None:
                    assert spec.range[0] <= value <= spec.range[1], (path.name, node, key, value, spec.range)
                if spec.choices is not None:
                    assert value in spec.choices, (path.name, node, key, value, spec.choices)
    assert checked > 100


def test_safety_parameters_are_not_live():
    from vla_adapter_ros.nodes import executor_node, policy_node

    for key in ("dry_run", "auto_enable", "robot", "control_rate_hz", "output", "require_start_pose",
                "max_step_translation_m", "max_step_rotation_rad", "gripper_output"):
        assert not executor_node.PARAMETERS[key].live, key
    for key in ("checkpoint", "device", "action_space", "dt"):
        assert not policy_node.PARAMETERS[key].live, key


def test_launch_choices_match_the_nodes():
    from vla_adapter_ros import launch_args
    from vla_adapter_ros.nodes import executor_node
    from vla_adapter_ros.platforms import PLATFORMS

    assert set(launch_args.CONTROLLERS) <= set(executor_node.OUTPUTS)
    assert launch_args.GRIPPER_OUTPUTS == executor_node.GRIPPER_OUTPUTS
    assert launch_args.PLATFORMS == tuple(PLATFORMS)
    pytest.importorskip("mujoco")
    from vla_adapter_ros.sim.tasks import TASKS

    assert launch_args.SIM_TASKS == tuple(TASKS)


# ------------------------------------------------------------------------------ a real node process
class ParamClient:
    def __init__(self, context, node_name):
        self.node = rclpy.create_node("param_tester", context=context)
        self.executor = SingleThreadedExecutor(context=context)
        self.executor.add_node(self.node)
        self.client = AsyncParameterClient(self.node, node_name)
        assert spin_until(self.executor, self.client.services_are_ready, 60), "parameter services"

    def _wait(self, future):
        assert spin_until(self.executor, future.done, 30)
        return future.result()

    def set(self, name, value):
        return self._wait(self.client.set_parameters([Parameter(name, value=value)])).results[0]

    def get(self, name):
        return parameter_value_to_python(self._wait(self.client.get_parameters([name])).values[0])

    def describe(self, names):
        return {d.name: d for d in self._wait(self.client.describe_parameters(names)).descriptors}

    def close(self):
        self.node.destroy_node()


@pytest.fixture
def executor_params(processes, rclpy_context, tmp_path):
    params = tmp_path / "executor.yaml"
    params.write_text("executor_node:\n  ros__parameters:\n    gripper_output: topic\n    use_sim_time: false\n")
    child = processes.start("executor_node", [sys.executable, "-m", "vla_adapter_ros.nodes.executor_node",
                                              "--ros-args", "--params-file", str(params)])
    child.wait_for_output("ready:", timeout=120)
    client = ParamClient(rclpy_context, "/executor_node")
    yield client, child
    client.close()


def test_executor_parameters_over_the_parameter_services(executor_params):
    client, child = executor_params
    from vla_adapter_ros.nodes.executor_node import DEFAULTS

    described = client.describe(list(DEFAULTS))
    assert set(described) == set(DEFAULTS)
    assert all(d.description for d in described.values())
    assert described["dry_run"].read_only and described["control_rate_hz"].read_only
    assert not described["refill_threshold_s"].read_only
    rate = described["control_rate_hz"].floating_point_range[0]
    assert (rate.from_value, rate.to_value) == (0.0, 10000.0)
    assert described["trajectory_points"].integer_range[0].to_value == 3
    assert "one of: jtc, forward, sim, eef_delta" in described["output"].additional_constraints

    # read-only: refused with a reason, value unchanged (dry_run can never be switched off live)
    for name, value in (("dry_run", True), ("dry_run", False), ("control_rate_hz", 500.0), ("output", "forward")):
        result = client.set(name, value)
        assert not result.successful and "read-only" in result.reason, (name, result.reason)
    assert client.get("dry_run") is False and client.get("control_rate_hz") == 0.0

    # live: accepted and in effect
    result = client.set("refill_threshold_s", 0.5)
    assert result.successful, result.reason
    assert client.get("refill_threshold_s") == 0.5
    assert client.set("blend_mode", "replace").successful
    assert client.get("blend_mode") == "replace"
    child.wait_for_output("parameters set: blend_mode='replace'", timeout=10)

    # invalid: refused with a reason, value unchanged
    result = client.set("refill_threshold_s", -1.0)
    assert not result.successful and "refill_threshold_s" in result.reason
    result = client.set("blend_mode", "average")
    assert not result.successful and "one of replace, crossfade, ensemble" in result.reason
    result = client.set("gripper_open_threshold", 0.9)  # above the close threshold 0.7
    assert not result.successful and "must be below gripper_close_threshold" in result.reason
    result = client.set("refill_threshold_s", "fast")  # wrong type
    assert not result.successful
    assert client.get("refill_threshold_s") == 0.5 and client.get("gripper_open_threshold") == 0.3
    assert child.alive()


def test_policy_live_parameters_take_effect(processes, rclpy_context, tmp_path):
    pytest.importorskip("torch")
    from vla_adapter_ros.srv import SetInstruction

    params = tmp_path / "policy.yaml"
    params.write_text("policy_node:\n  ros__parameters:\n    warmup_iterations: 1\n")
    child = processes.start("policy_node", [sys.executable, "-m", "vla_adapter_ros.nodes.policy_node",
                                            "--ros-args", "--params-file", str(params)])
    child.wait_for_output("ready:", timeout=240)
    client = ParamClient(rclpy_context, "/policy_node")
    try:
        service = client.node.create_client(SetInstruction, "/policy_node/set_instruction")
        assert spin_until(client.executor, service.service_is_ready, 30)

        def instruct(text):
            return client._wait(service.call_async(SetInstruction.Request(instruction=text)))

        assert instruct("pick up the red cube and put it in the box").success
        assert client.set("max_instruction_chars", 20).successful
        reply = instruct("pick up the red cube and put it in the box")
        assert not reply.success and "20" in reply.message, reply.message
        assert not client.set("max_instruction_chars", 0).successful  # out of range

        assert client.set("action_scale", [0.5] * 6).successful
        result = client.set("action_scale", [0.5] * 5)  # the model has 6 arm columns
        assert not result.successful and "action_scale" in result.reason
        result = client.set("action_scale", [0.5, 0.5, 0.5, -1.0, 1.0, 1.0])
        assert not result.successful and "positive" in result.reason
        assert list(client.get("action_scale")) == [0.5] * 6

        result = client.set("checkpoint", "/elsewhere")
        assert not result.successful and "read-only" in result.reason
        described = client.describe(["device", "action_scale", "max_age"])
        assert described["device"].read_only and "restart" in described["device"].description
        assert not described["action_scale"].read_only
        assert described["max_age"].floating_point_range[0].to_value == 60.0
    finally:
        client.close()
    assert child.alive()


# ------------------------------------------------------------------------------ typos refuse the start
def _exit_output(processes, name, args, timeout=120):
    child = processes.start(name, [sys.executable, "-m", f"vla_adapter_ros.nodes.{name}", "--ros-args", *args])
    child.proc.wait(timeout)
    return child.proc.returncode, child.output()


def test_unknown_parameter_on_the_command_line_refuses_the_start(processes):
    code, out = _exit_output(processes, "policy_node", ["-p", "chekpoint:=/x"])
    assert code == 1, out
    fatal = [line for line in out.splitlines() if "FATAL" in line]
    assert len(fatal) == 1, out  # one line, not two
    assert "unknown parameter 'chekpoint' (did you mean 'checkpoint'?)" in fatal[0]
    assert "loading model" not in out  # refused before the model is loaded


def test_unknown_parameter_in_a_params_file_refuses_the_start(processes, tmp_path):
    params = tmp_path / "executor.yaml"
    params.write_text("executor_node:\n  ros__parameters:\n    use_sim_time: true\n    dryrun: true\n"
                      "    qos_overrides./joint_states.subscription.depth: 5\n")
    code, out = _exit_output(processes, "executor_node", ["--params-file", str(params)])
    assert code == 1, out
    assert "unknown parameter 'dryrun' (did you mean 'dry_run'?)" in out
    assert "use_sim_time" not in out.split("unknown parameter")[-1] and "qos_overrides" not in out


def test_standard_parameters_are_accepted(processes):
    child = processes.start("executor_node", [sys.executable, "-m", "vla_adapter_ros.nodes.executor_node",
                                              "--ros-args", "-p", "use_sim_time:=true", "-p",
                                              "start_type_description_service:=false"])
    child.wait_for_output("ready:", timeout=120)
    child.wait_for_output("waiting for /clock (use_sim_time is true)", timeout=30)
    assert child.alive()


def test_a_value_outside_the_choices_refuses_the_start(processes):
    code, out = _exit_output(processes, "executor_node", ["-p", "gripper_output:=magic"])
    assert code == 1, out
    assert "gripper_output must be one of none, topic, franka, auto; got 'magic'" in out


def test_gripper_output_auto_without_franka_msgs_falls_back_with_a_warning(processes):
    import importlib.util

    if importlib.util.find_spec("franka_msgs") is not None:
        pytest.skip("franka_msgs is installed here")
    child = processes.start("executor_node", [sys.executable, "-m", "vla_adapter_ros.nodes.executor_node",
                                              "--ros-args", "-p", "gripper_output:=auto"])
    child.wait_for_output("ready:", timeout=120)
    assert "gripper_output auto: franka_msgs is not installed, so NO gripper commands are sent" in child.output()


def test_sim_live_parameters(processes, rclpy_context, tmp_path):
    pytest.importorskip("mujoco")
    params = tmp_path / "sim.yaml"
    params.write_text("sim_node:\n  ros__parameters:\n    camera_rate_hz: 5.0\n    image_width: 64\n"
                      "    image_height: 64\n")
    child = processes.start("sim_node", [sys.executable, "-m", "vla_adapter_ros.nodes.sim_node",
                                         "--ros-args", "--params-file", str(params)])
    child.wait_for_output("ready:", timeout=240)
    client = ParamClient(rclpy_context, "/sim_node")
    try:
        assert client.set("real_time_factor", 2.0).successful
        assert client.get("real_time_factor") == 2.0
        result = client.set("start_jitter", 2.0)
        assert not result.successful and "start jitter must be in [0, 1], got 2.0" in result.reason
        assert client.set("start_jitter", 0.5).successful
        result = client.set("task", "lift_green")
        assert not result.successful and "read-only" in result.reason
    finally:
        client.close()
    assert child.alive()
