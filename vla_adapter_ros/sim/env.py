"""FrankaSimEnv: physics stepping, joint position control, gripper, state queries and rendering.

Units: rad, rad/s, m, s. All poses are in the robot base frame (== MuJoCo world frame here).
No ROS imports: a ROS node wraps this class.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from vla_adapter_ros.sim import scene as _scene
from vla_adapter_ros.sim.scene import mujoco  # environment variables for EGL set by scene

READY_POSE = np.array([0.0, -math.pi / 4, 0.0, -3 * math.pi / 4, 0.0, math.pi / 2, math.pi / 4])
GRIPPER_MAX_WIDTH_M = 2 * _scene.FINGER_MAX_M  # 0.08


def _mat_to_quat_xyzw(rot: np.ndarray) -> np.ndarray:
    q = np.empty(4)
    mujoco.mju_mat2Quat(q, np.ascontiguousarray(rot, dtype=float).reshape(9))
    return np.array([q[1], q[2], q[3], q[0]])  # wxyz -> xyzw


@dataclass
class EefPose:
    """TCP pose in the robot base frame: position (m), rotation matrix, quaternion (x, y, z, w)."""

    position: np.ndarray
    rotation: np.ndarray
    quat_xyzw: np.ndarray

    def matrix(self) -> np.ndarray:
        t = np.eye(4)
        t[:3, :3] = self.rotation
        t[:3, 3] = self.position
        return t


class FrankaSimEnv:
    """Simulated Franka arm + hand on a table with cubes.

    Args:
        joint_prefix: prefix of the public joint names: ``"fr3_"`` gives ``fr3_joint1..7`` and
            ``fr3_finger_joint1/2``; ``"panda_"`` gives the legacy names.
        cubes: colours of the cubes in the scene (subset of ``scene.CUBE_COLOURS``).
        timestep_s: physics step (<= 0.002 s).
        offscreen_max: largest (width, height) that :meth:`render` accepts.
        task: optional task name or :class:`~vla_adapter_ros.sim.tasks.Task`; then
            ``reset(seed)`` places the cubes with the task's seeded placement.
    """

    def __init__(self, joint_prefix: str = "fr3_", cubes=_scene.DEFAULT_CUBES,
                 timestep_s: float = _scene.TIMESTEP_S, offscreen_max=(640, 480), task=None):
        if timestep_s > 0.002 + 1e-12:
            raise ValueError("timestep_s must be <= 0.002 s")
        self.joint_prefix = joint_prefix
        if isinstance(task, str):
            from vla_adapter_ros.sim.tasks import get_task

            task = get_task(task)
        self.task = task
        self.model = _scene.build_model(_scene.SceneConfig(cubes=tuple(cubes), timestep_s=timestep_s,
                                                           offscreen_max=tuple(offscreen_max)))
        self.data = mujoco.MjData(self.model)
        m = self.model
        jid = lambda n: mujoco.mj_name2id(m, mujoco.mjtObj.mjOBJ_JOINT, n)  # noqa: E731
        self._arm_qadr = np.array([m.jnt_qposadr[jid(n)] for n in _scene.ARM_JOINTS_INTERNAL])
        self._arm_dadr = np.array([m.jnt_dofadr[jid(n)] for n in _scene.ARM_JOINTS_INTERNAL])
        self._fin_qadr = np.array([m.jnt_qposadr[jid(n)] for n in _scene.FINGER_JOINTS_INTERNAL])
        self._fin_dadr = np.array([m.jnt_dofadr[jid(n)] for n in _scene.FINGER_JOINTS_INTERNAL])
        aid = lambda n: mujoco.mj_name2id(m, mujoco.mjtObj.mjOBJ_ACTUATOR, n)  # noqa: E731
        self._arm_act = np.array([aid(n) for n in _scene.ARM_ACTUATORS_INTERNAL])
        self._fin_act = np.array([aid(n) for n in _scene.FINGER_ACTUATORS_INTERNAL])
        self._arm_kp = m.actuator_gainprm[self._arm_act, 0].copy()
        self._arm_kd = -m.actuator_biasprm[self._arm_act, 2].copy()
        self._tcp_site = mujoco.mj_name2id(m, mujoco.mjtObj.mjOBJ_SITE, _scene.TCP_SITE)
        self.q_min = m.jnt_range[[jid(n) for n in _scene.ARM_JOINTS_INTERNAL], 0].copy()
        self.q_max = m.jnt_range[[jid(n) for n in _scene.ARM_JOINTS_INTERNAL], 1].copy()
        self.cubes = tuple(cubes)
        self._cube_qadr = {c: m.jnt_qposadr[jid(f"{c}_cube_joint")] for c in self.cubes}
        self._cube_dadr = {c: m.jnt_dofadr[jid(f"{c}_cube_joint")] for c in self.cubes}
        gid = lambda n: mujoco.mj_name2id(m, mujoco.mjtObj.mjOBJ_GEOM, n)  # noqa: E731
        self._cube_geom = {c: gid(f"{c}_cube_geom") for c in self.cubes}
        self._finger_geoms = [mujoco.mj_name2id(m, mujoco.mjtObj.mjOBJ_GEOM, n) for n in _scene.FINGER_GEOMS]
        self._renderers: dict[tuple[int, int], mujoco.Renderer] = {}
        self._vopt = mujoco.MjvOption()
        self._vopt.sitegroup[:] = 0  # hide helper sites (TCP marker, robosuite grip sites)
        self._q_target = READY_POSE.copy()
        self._qd_target = np.zeros(7)
        self._gripper_width_target = GRIPPER_MAX_WIDTH_M
        self.reset()

    # ------------------------------------------------------------------ names
    @property
    def joint_names(self) -> list[str]:
        return [f"{self.joint_prefix}joint{i}" for i in range(1, 8)]

    @property
    def finger_joint_names(self) -> list[str]:
        return [f"{self.joint_prefix}finger_joint1", f"{self.joint_prefix}finger_joint2"]

    @property
    def all_joint_names(self) -> list[str]:
        return self.joint_names + self.finger_joint_names

    # ------------------------------------------------------------------ lifecycle
    def reset(self, seed: int | None = None, q0=None, cube_poses: dict | None = None,
              gripper_width: float = GRIPPER_MAX_WIDTH_M) -> dict:
        """Reset to ``q0`` (default ready pose), open gripper, cubes at ``cube_poses``.

        cube_poses: {colour: (x, y) or (x, y, yaw)} in the base frame (m, rad). If None and the
        env has a task, the task's placement for ``seed`` (seed None -> 0) is used; otherwise
        cubes are placed in a row out of the way. ``seed`` also seeds :attr:`rng`.
        Returns :meth:`state`.
        """
        if cube_poses is None and self.task is not None:
            cube_poses = self.task.placement(0 if seed is None else seed, self.cubes)
        self.rng = np.random.default_rng(seed)
        self._pending_s = 0.0
        mujoco.mj_resetData(self.model, self.data)
        q0 = READY_POSE if q0 is None else self._check_vec(q0, 7, "q0")
        self.data.qpos[self._arm_qadr] = q0
        w = float(np.clip(gripper_width, 0.0, GRIPPER_MAX_WIDTH_M))
        self.data.qpos[self._fin_qadr] = [w / 2, -w / 2]
        cube_poses = cube_poses or {}
        for k, c in enumerate(self.cubes):
            pose = cube_poses.get(c, (0.75, -0.3 + 0.15 * k, 0.0))
            self.set_cube_pose(c, pose, forward=False)
        self._q_target = np.array(q0, dtype=float)
        self._qd_target = np.zeros(7)
        self._apply_arm_ctrl()
        self.set_gripper(w)
        mujoco.mj_forward(self.model, self.data)
        self.task_initial_cubes = {c: self.cube_pose(c)[0] for c in self.cubes}
        return self.state()

    def set_cube_pose(self, colour: str, pose, forward: bool = True) -> None:
        """Place a cube resting on the table: pose = (x, y) or (x, y, yaw) (m, rad)."""
        x, y = float(pose[0]), float(pose[1])
        yaw = float(pose[2]) if len(pose) > 2 else 0.0
        a = self._cube_qadr[colour]
        self.data.qpos[a:a + 3] = [x, y, _scene.CUBE_HALF_M]
        self.data.qpos[a + 3:a + 7] = [math.cos(yaw / 2), 0.0, 0.0, math.sin(yaw / 2)]
        d = self._cube_dadr[colour]
        self.data.qvel[d:d + 6] = 0.0
        if forward:
            mujoco.mj_forward(self.model, self.data)

    # ------------------------------------------------------------------ commands
    @staticmethod
    def _check_vec(v, n: int, what: str) -> np.ndarray:
        arr = np.asarray(v, dtype=float).reshape(-1)
        if arr.shape != (n,):
            raise ValueError(f"{what} must have {n} elements, got {arr.shape}")
        if not np.all(np.isfinite(arr)):
            raise ValueError(f"{what} contains NaN/inf; command rejected, holding previous target")
        return arr

    def set_joint_targets(self, q_target, qd_target=None, names=None) -> None:
        """Arm joint position reference (rad) and optional velocity feed-forward (rad/s).

        ``names`` (optional): joint names of the entries (public names, any order); otherwise the
        order is joint1..7. Targets are clipped to the joint limits. Raises ValueError (and keeps
        the previous target) on NaN/inf or a wrong shape.
        """
        q = self._check_vec(q_target, 7, "q_target")
        qd = np.zeros(7) if qd_target is None else self._check_vec(qd_target, 7, "qd_target")
        if names is not None:
            names = list(names)
            if sorted(names) != sorted(self.joint_names):
                raise ValueError(f"names must be a permutation of {self.joint_names}")
            order = [names.index(n) for n in self.joint_names]
            q, qd = q[order], qd[order]
        self._q_target = np.clip(q, self.q_min, self.q_max)
        self._qd_target = qd
        self._apply_arm_ctrl()

    def _apply_arm_ctrl(self) -> None:
        # Position actuator: tau = kp (ctrl - q) - kd qd; ctrl = q_ref + kd/kp qd_ref gives
        # tau = kp (q_ref - q) + kd (qd_ref - qd), with the damping integrated implicitly.
        self.data.ctrl[self._arm_act] = self._q_target + self._arm_kd / self._arm_kp * self._qd_target

    def set_gripper(self, command) -> None:
        """Gripper: bool (True = closed) or a width in m (0 .. 0.08, total finger opening)."""
        if isinstance(command, (bool, np.bool_)):
            width = 0.0 if command else GRIPPER_MAX_WIDTH_M
        else:
            width = float(command)
            if not math.isfinite(width):
                raise ValueError("gripper width is NaN/inf; command rejected")
        width = float(np.clip(width, 0.0, GRIPPER_MAX_WIDTH_M))
        self._gripper_width_target = width
        self.data.ctrl[self._fin_act] = [width / 2, -width / 2]

    @property
    def joint_targets(self) -> np.ndarray:
        return self._q_target.copy()

    @property
    def gripper_width_target(self) -> float:
        return self._gripper_width_target

    # ------------------------------------------------------------------ time
    @property
    def timestep(self) -> float:
        return float(self.model.opt.timestep)

    @property
    def sim_time(self) -> float:
        return float(self.data.time)

    def step(self, n_substeps: int = 1) -> None:
        """Integrate ``n_substeps`` physics steps holding the current commands."""
        mujoco.mj_step(self.model, self.data, nstep=int(n_substeps))
        if not np.all(np.isfinite(self.data.qpos)):  # should not happen; recover rather than crash
            self.reset(q0=np.clip(np.nan_to_num(self._q_target), self.q_min, self.q_max))
            raise RuntimeError("simulation diverged; environment was reset")

    def advance(self, dt: float) -> int:
        """Integrate ``dt`` seconds in whole physics steps; the remainder is carried over to the
        next call (so e.g. 1 ms calls with a 2 ms timestep step every other call). Returns the
        number of physics steps taken."""
        if not math.isfinite(dt) or dt < 0:
            raise ValueError("dt must be finite and >= 0")
        self._pending_s += dt
        n = int(math.floor(self._pending_s / self.timestep + 1e-9))
        self._pending_s = max(0.0, self._pending_s - n * self.timestep)
        if n:
            self.step(n)
        return n

    # ------------------------------------------------------------------ state
    def joint_positions(self) -> np.ndarray:
        return self.data.qpos[self._arm_qadr].copy()

    def joint_velocities(self) -> np.ndarray:
        return self.data.qvel[self._arm_dadr].copy()

    def joint_efforts(self) -> np.ndarray:
        return self.data.actuator_force[self._arm_act].copy()

    def finger_positions(self) -> np.ndarray:
        """Finger joint positions (m), both >= 0 like Franka's finger_joint1/2; width = sum."""
        q = self.data.qpos[self._fin_qadr]
        return np.array([q[0], -q[1]])

    def finger_velocities(self) -> np.ndarray:
        v = self.data.qvel[self._fin_dadr]
        return np.array([v[0], -v[1]])

    def gripper_width(self) -> float:
        return float(self.finger_positions().sum())

    def eef_pose(self) -> EefPose:
        """TCP pose (Franka Hand convention: 0.1034 m beyond the flange, between the fingertips,
        frame yawed -pi/4 about the flange z) in the robot base frame."""
        pos = self.data.site_xpos[self._tcp_site].copy()
        rot = self.data.site_xmat[self._tcp_site].reshape(3, 3).copy()
        return EefPose(pos, rot, _mat_to_quat_xyzw(rot))

    def cube_pose(self, colour: str) -> tuple[np.ndarray, np.ndarray]:
        """(position (3,), quaternion xyzw (4,)) of a cube's centre, base frame."""
        a = self._cube_qadr[colour]
        w, x, y, z = self.data.qpos[a + 3:a + 7]
        return self.data.qpos[a:a + 3].copy(), np.array([x, y, z, w])

    def cube_yaw(self, colour: str) -> float:
        a = self._cube_qadr[colour]
        w, x, y, z = self.data.qpos[a + 3:a + 7]
        return math.atan2(2 * (w * z + x * y), 1 - 2 * (y * y + z * z))

    def finger_contacts(self, colour: str) -> tuple[bool, bool]:
        """Whether finger 1 / finger 2 (mesh or pad) touch the cube."""
        g = self._cube_geom[colour]
        ids = self._finger_geoms  # finger1 mesh, finger2 mesh, finger1 pad, finger2 pad
        f1, f2 = {ids[0], ids[2]}, {ids[1], ids[3]}
        t1 = t2 = False
        for i in range(self.data.ncon):
            c = self.data.contact[i]
            other = c.geom2 if c.geom1 == g else c.geom1 if c.geom2 == g else None
            if other is None:
                continue
            t1 |= other in f1
            t2 |= other in f2
        return t1, t2

    def state(self) -> dict:
        """Snapshot: names, q, dq, fingers, TCP pose, cube positions, sim time."""
        pose = self.eef_pose()
        return {
            "time": self.sim_time,
            "joint_names": self.all_joint_names,
            "q": self.joint_positions(),
            "dq": self.joint_velocities(),
            "fingers": self.finger_positions(),
            "eef_position": pose.position,
            "eef_quat_xyzw": pose.quat_xyzw,
            "cubes": {c: self.cube_pose(c)[0] for c in self.cubes},
        }

    # ------------------------------------------------------------------ rendering
    def render(self, camera: str = "agentview", width: int = 224, height: int = 224,
               fast: bool = True) -> np.ndarray:
        """RGB image (height, width, 3) uint8, upright (row 0 = top of the view).

        camera: ``agentview`` (third person, in front of the robot looking back at it: the image's
        right is the robot's left) or ``wrist`` (eye in hand). fast=True turns off shadows,
        reflections and multisampling (~8x cheaper on CPU).
        """
        key = (int(width), int(height))
        r = self._renderers.get(key)
        if r is None:
            r = mujoco.Renderer(self.model, height=key[1], width=key[0])
            self._renderers[key] = r
        r.update_scene(self.data, camera=_scene.camera_name(camera), scene_option=self._vopt)
        flags = r.scene.flags
        flags[mujoco.mjtRndFlag.mjRND_SHADOW] = not fast
        flags[mujoco.mjtRndFlag.mjRND_REFLECTION] = not fast
        flags[mujoco.mjtRndFlag.mjRND_SKYBOX] = True
        self.model.vis.quality.offsamples = 0 if fast else 4
        return r.render().copy()

    def camera_matrix(self, camera: str, width: int, height: int) -> np.ndarray:
        """3x4 pinhole projection (pixels, row 0 at top) of a camera at the current state."""
        cid = mujoco.mj_name2id(self.model, mujoco.mjtObj.mjOBJ_CAMERA, _scene.camera_name(camera))
        pos = self.data.cam_xpos[cid]
        rot = self.data.cam_xmat[cid].reshape(3, 3)  # columns: camera x (right), y (up), z (back)
        fovy = math.radians(self.model.cam_fovy[cid])
        f = 0.5 * height / math.tan(fovy / 2)
        k = np.array([[f, 0, width / 2], [0, f, height / 2], [0, 0, 1]])
        # camera coords with x right, y down, z forward
        r_cv = np.stack([rot[:, 0], -rot[:, 1], -rot[:, 2]])
        return k @ np.hstack([r_cv, (-r_cv @ pos)[:, None]])

    def project(self, camera: str, point, width: int, height: int) -> np.ndarray:
        """Pixel (u = column, v = row) of a base-frame point in a rendered image."""
        p = self.camera_matrix(camera, width, height) @ np.append(np.asarray(point, float), 1.0)
        return p[:2] / p[2]

    def close(self) -> None:
        for r in self._renderers.values():
            r.close()
        self._renderers.clear()

    def __del__(self):
        try:
            self.close()
        except Exception:  # noqa: BLE001
            pass
