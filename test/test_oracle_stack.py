"""The oracle path through the real nodes: sim_node answers executor_node's chunk requests with the scripted
expert's ActionChunks (oracle mode), executor_node commands the simulated arm through its limits, exactly as
`vla-adapter-ros replay --oracle` starts them (config/sim.yaml, executor.yaml + executor_sim.yaml). One short
episode per task; every wait is in simulated time with generous wall-clock bounds (no timing assertions)."""

from __future__ import annotations

import time

import pytest

rclpy = pytest.importorskip("rclpy")
pytest.importorskip("mujoco")

from rclpy.executors import SingleThreadedExecutor  # noqa: E402

from ros_harness import spin_until  # noqa: E402

pytestmark = [pytest.mark.ros, pytest.mark.slow]


class _Session:
    """What SimEpisodes needs of a StackSession, on the test's own node and context."""

    def __init__(self, node, executor):
        self.node, self.executor = node, executor

    def spin_until(self, predicate, timeout, interruptible=True):
        return spin_until(self.executor, predicate, timeout)

    def call(self, client, request, timeout=60.0, interruptible=True):
        future = client.call_async(request)
        assert self.spin_until(future.done, timeout), f"{client.srv_name}: no answer within {timeout} s"
        return future.result()


def test_oracle_solves_one_episode_per_task_through_the_nodes(processes, rclpy_context, tmp_path):
    from types import SimpleNamespace

    from vla_adapter_ros.msg import ActionChunk
    from vla_adapter_ros.replay import _params_yaml, node_specs
    from vla_adapter_ros.sim.tasks import get_task
    from vla_adapter_ros.sim_episodes import SimEpisodes

    params = tmp_path / "params.yaml"
    args = SimpleNamespace(image_size=(48, 48), oracle=True, real_time_factor=1.0)
    params.write_text(_params_yaml(args, "push_blue_left", 1000, 0.0))
    children = {spec.name: processes.start(spec.name, spec.argv()) for spec in node_specs(params)}
    for child in children.values():
        child.wait_for_output("ready:", timeout=180)
    assert "oracle: expert chunks on /vla/action_chunk" in children["sim_node"].output()
    assert "robot fr3_sim" in children["executor_node"].output()

    node = rclpy.create_node("oracle_observer", context=rclpy_context)
    executor = SingleThreadedExecutor(context=rclpy_context)
    executor.add_node(node)
    chunks: list[ActionChunk] = []
    node.create_subscription(ActionChunk, "/vla/action_chunk", chunks.append, 50)
    episodes = SimEpisodes(_Session(node, executor))
    assert episodes.wait_ready(120), {name: c.output()[-2000:] for name, c in children.items()}

    outcomes = {}
    for task in ("reach_red", "push_blue_left", "lift_green"):
        before = dict(episodes.executor_counts)
        reply = episodes.reset(task, 1000)
        assert reply.success and reply.task == task
        first = len(chunks)
        episodes.enable()
        wall = time.monotonic()
        outcome = episodes.wait_outcome(get_task(task).max_duration_s)
        assert not outcome.timed_out, children["sim_node"].output()[-2000:]
        counts = episodes.executor_counts_since(before)
        outcomes[task] = (outcome.success, round(outcome.sim_s, 2), round(time.monotonic() - wall), counts)
        # chunks as policy_node builds them: EEF deltas, 8 rows 0.1 s apart, a gripper closure per row
        mine = chunks[first:]
        assert mine and counts.get("chunks_accepted", 0) >= 3, outcomes
        c = mine[0]
        assert c.action_space == ActionChunk.EEF_DELTA and c.horizon == 8 and c.action_dim == 6
        assert len(c.actions) == 48 and len(c.gripper) == 8 and abs(c.dt - 0.1) < 1e-9
        assert c.instruction == reply.instruction and c.model_id == "scripted-expert-oracle"
        assert all(0.0 <= g <= 1.0 for ch in mine for g in ch.gripper)
    episodes.disable()
    assert all(child.alive() for child in children.values())
    node.destroy_node()
    for task, (success, _, _, counts) in outcomes.items():
        assert success, outcomes
        # the executor never held the plan back (it runs within the limits, no control period is skipped) and the
        # tool did not drift into the workspace floor: with drift, hundreds of workspace holds; without, a few
        # dozen ticks where braking from a descent toward the table is predicted to end below the floor
        assert not {"jump_from_measured", "joint_state_timeout"} & set(counts), outcomes
        assert counts.get("workspace", 0) < 100, outcomes
