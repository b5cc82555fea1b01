"""MuJoCo scene: Franka Panda (robosuite package data) on a table with coloured cubes and two cameras.

The robot model files are read from the installed ``robosuite`` distribution (MIT licence); they are
located without importing robosuite (its import is heavy). Nothing is downloaded at run time.

World frame == robot base frame (``link0``): x forward, y left, z up, m. The table top is the
plane z = 0 (the robot is mounted on it); the floor is at ``-TABLE_HEIGHT_M``.

Internal MuJoCo names (``robot/joint1``, ``robot/gripper/finger_joint1``, ...) differ from the
Franka names; :mod:`vla_adapter_ros.sim.env` maps them to ``<prefix>joint1..7`` and
``<prefix>finger_joint1/2``.
"""

from __future__ import annotations

import importlib.util
import math
import os
from dataclasses import dataclass, field

# Headless rendering defaults; must be set before mujoco is first imported anywhere in the process
# (mujoco picks its GL backend at import): import this module first, or export MUJOCO_GL=egl.
os.environ.setdefault("MUJOCO_GL", "egl")
if os.environ["MUJOCO_GL"] == "egl":
    os.environ.setdefault("PYOPENGL_PLATFORM", "egl")

import mujoco  # noqa: E402
import numpy as np  # noqa: E402

TIMESTEP_S = 0.002  # 500 Hz physics
TABLE_HEIGHT_M = 0.75
TABLE_X_RANGE = (-0.35, 1.0)  # table top extent in the base frame (m)
TABLE_Y_RANGE = (-0.7, 0.7)
CUBE_HALF_M = 0.02  # 4 cm cubes
CUBE_MASS_KG = 0.05
CUBE_COLOURS = {
    "red": (0.85, 0.1, 0.1, 1.0),
    "green": (0.1, 0.75, 0.15, 1.0),
    "blue": (0.1, 0.25, 0.9, 1.0),
    "yellow": (0.9, 0.8, 0.1, 1.0),
}
DEFAULT_CUBES = ("red", "green", "blue")

# Per-joint PD gains of the simulated joint position controller (N m / rad, N m s / rad).
ARM_KP = (2000.0, 2000.0, 1500.0, 1500.0, 800.0, 600.0, 400.0)
ARM_KD = (120.0, 120.0, 90.0, 90.0, 40.0, 30.0, 20.0)
ARM_ARMATURE = (0.2, 0.2, 0.2, 0.2, 0.1, 0.1, 0.1)  # reflected rotor inertia (kg m^2)
ARM_TORQUE_LIMIT = (87.0, 87.0, 87.0, 87.0, 12.0 * 4, 12.0 * 4, 12.0 * 4)
GRIPPER_KP = 1000.0
GRIPPER_FORCE_LIMIT_N = 40.0
FINGER_MAX_M = 0.04  # per finger; full width 0.08 m

# Franka convention TCP: flange 0.107 m after joint 7 along z7, then 0.1034 m (hand), yaw -pi/4.
TCP_FROM_LINK7_M = 0.107 + 0.1034
TCP_YAW_RAD = -math.pi / 4

# Camera placement (base frame, m). agentview: in front of the robot looking back at it and the
# table, like LIBERO/robosuite's agentview. The image's right is the robot's left (+y).
# Framing: the whole arm at the ready pose (link0's back to the elbow's top, 0.78 m) and the cube
# workspace (tasks.WORKSPACE_X/Y, up to a lifted cube) inside the image with a few pixels to spare, 31 deg
# above the table, with the cubes as large as that allows (a grid search over position, target and
# field of view; test/test_sim_env.py checks the framing by projection).
AGENTVIEW_POS = (1.4, 0.0, 1.0)
AGENTVIEW_TARGET = (0.25, 0.0, 0.3)
AGENTVIEW_FOVY_DEG = 45.0
WRIST_FOVY_DEG = 75.0

# Rendering of the robot: collision geoms go to a group the cameras do not draw (MuJoCo draws groups
# 0-2 by default), and the robot's materials are matte.
ROBOT_COLLISION_GROUP = 3
ROBOT_SPECULAR = 0.1
ROBOT_SHININESS = 0.2

ARM_JOINTS_INTERNAL = tuple(f"robot/joint{i}" for i in range(1, 8))
FINGER_JOINTS_INTERNAL = ("robot/gripper/finger_joint1", "robot/gripper/finger_joint2")
ARM_ACTUATORS_INTERNAL = tuple(f"arm_act{i}" for i in range(1, 8))
FINGER_ACTUATORS_INTERNAL = ("finger_act1", "finger_act2")
TCP_SITE = "robot/tcp"
FINGER_PAD_GEOMS = ("robot/gripper/finger1_pad_collision", "robot/gripper/finger2_pad_collision")
FINGER_GEOMS = (
    "robot/gripper/finger1_collision",
    "robot/gripper/finger2_collision",
) + FINGER_PAD_GEOMS
CAMERAS = ("agentview", "wrist")


def robosuite_assets_dir() -> str:
    """Directory ``robosuite/models/assets`` of the installed robosuite, found without importing it."""
    spec = importlib.util.find_spec("robosuite")
    if spec is None or not spec.submodule_search_locations:
        raise RuntimeError(
            "robosuite is not installed; `pip install --no-deps robosuite` (only its Panda model "
            "files are used)"
        )
    for loc in spec.submodule_search_locations:
        path = os.path.join(loc, "models", "assets")
        if os.path.isfile(os.path.join(path, "robots", "panda", "robot.xml")):
            return path
    raise RuntimeError("robosuite found but robots/panda/robot.xml is missing")


@dataclass
class SceneConfig:
    cubes: tuple[str, ...] = DEFAULT_CUBES
    timestep_s: float = TIMESTEP_S
    offscreen_max: tuple[int, int] = (640, 480)  # largest render size (w, h)
    extra: dict = field(default_factory=dict)


def _absolutise_mesh_paths(spec: mujoco.MjSpec, xml_path: str) -> None:
    base = os.path.dirname(xml_path)
    meshdir = spec.meshdir or ""
    for mesh in spec.meshes:
        if mesh.file and not os.path.isabs(mesh.file):
            mesh.file = os.path.normpath(os.path.join(base, meshdir, mesh.file))
    spec.meshdir = ""


def _set_damping(joint, value: float) -> None:
    """Joint damping: a scalar in mujoco 3.x, a 3-vector (linear first) in mujoco 4."""
    try:
        joint.damping = value
    except TypeError:
        joint.damping = [value, 0.0, 0.0]


def _look_at_xyaxes(pos, target) -> list[float]:
    pos, target = np.asarray(pos, float), np.asarray(target, float)
    fwd = target - pos
    fwd /= np.linalg.norm(fwd)
    right = np.cross(fwd, [0.0, 0.0, 1.0])
    right /= np.linalg.norm(right)
    up = np.cross(right, fwd)
    return [*right, *up]


def _robot_spec(assets: str) -> mujoco.MjSpec:
    robot_xml = os.path.join(assets, "robots", "panda", "robot.xml")
    gripper_xml = os.path.join(assets, "grippers", "panda_gripper.xml")
    robot = mujoco.MjSpec.from_file(robot_xml)
    gripper = mujoco.MjSpec.from_file(gripper_xml)
    _absolutise_mesh_paths(robot, robot_xml)
    _absolutise_mesh_paths(gripper, gripper_xml)
    # Drop the torque motors, robosuite cameras other than the wrist one, gripper actuators/sensors:
    # we add our own actuators below.
    for act in list(robot.actuators):
        robot.delete(act)
    for act in list(gripper.actuators):
        gripper.delete(act)
    for sens in list(gripper.sensors):
        gripper.delete(sens)
    for cam in list(robot.cameras):
        if cam.name != "eye_in_hand":
            robot.delete(cam)
    hand = robot.body("right_hand")
    frame = hand.add_frame()
    frame.attach_body(gripper.body("right_gripper"), "gripper/", "")
    # TCP site at the Franka convention (see module docstring), in link7's frame.
    link7 = robot.body("link7")
    c, s = math.cos(TCP_YAW_RAD / 2), math.sin(TCP_YAW_RAD / 2)
    link7.add_site(name="tcp", pos=[0, 0, TCP_FROM_LINK7_M], quat=[c, 0, 0, s], size=[0.005, 0, 0],
                   rgba=[1, 0, 1, 0.0], group=3)
    return robot


def build_spec(config: SceneConfig | None = None) -> mujoco.MjSpec:
    """Return the complete scene as an (uncompiled) ``mujoco.MjSpec``."""
    config = config or SceneConfig()
    assets = robosuite_assets_dir()
    spec = mujoco.MjSpec()
    spec.modelname = "franka_table_cubes"
    spec.option.timestep = config.timestep_s
    spec.option.integrator = mujoco.mjtIntegrator.mjINT_IMPLICITFAST
    spec.option.cone = mujoco.mjtCone.mjCONE_ELLIPTIC
    spec.option.noslip_iterations = 3
    spec.visual.global_.offwidth = int(config.offscreen_max[0])
    spec.visual.global_.offheight = int(config.offscreen_max[1])
    spec.visual.quality.shadowsize = 2048
    spec.visual.headlight.ambient = [0.35, 0.35, 0.35]
    spec.visual.headlight.diffuse = [0.5, 0.5, 0.5]
    spec.stat.center = [0.4, 0.0, 0.2]
    spec.stat.extent = 1.2

    # Textures / materials.
    spec.add_texture(name="sky", type=mujoco.mjtTexture.mjTEXTURE_SKYBOX,
                     builtin=mujoco.mjtBuiltin.mjBUILTIN_GRADIENT, rgb1=[0.55, 0.7, 0.9],
                     rgb2=[0.95, 0.95, 1.0], width=256, height=256)
    spec.add_texture(name="floor_tex", type=mujoco.mjtTexture.mjTEXTURE_2D,
                     builtin=mujoco.mjtBuiltin.mjBUILTIN_CHECKER, rgb1=[0.3, 0.3, 0.32],
                     rgb2=[0.4, 0.4, 0.42], width=256, height=256)
    floor_mat = spec.add_material(name="floor_mat", texrepeat=[8, 8], reflectance=0.0)
    floor_mat.textures[mujoco.mjtTextureRole.mjTEXROLE_RGB] = "floor_tex"
    spec.add_material(name="table_mat", rgba=[0.62, 0.48, 0.33, 1.0], reflectance=0.0)

    world = spec.worldbody
    world.add_light(name="key", pos=[0.6, -0.4, 2.0], dir=[-0.2, 0.2, -1.0], castshadow=True,
                    diffuse=[0.6, 0.6, 0.6])
    world.add_geom(name="floor", type=mujoco.mjtGeom.mjGEOM_PLANE, size=[3, 3, 0.1],
                   pos=[0, 0, -TABLE_HEIGHT_M], material="floor_mat", contype=1, conaffinity=3)
    tx = 0.5 * (TABLE_X_RANGE[1] - TABLE_X_RANGE[0])
    ty = 0.5 * (TABLE_Y_RANGE[1] - TABLE_Y_RANGE[0])
    cx = 0.5 * (TABLE_X_RANGE[1] + TABLE_X_RANGE[0])
    world.add_geom(name="table_top", type=mujoco.mjtGeom.mjGEOM_BOX, size=[tx, ty, 0.025],
                   pos=[cx, 0, -0.025], material="table_mat", contype=1, conaffinity=3,
                   friction=[1.0, 0.005, 0.0001])
    leg_h = 0.5 * (TABLE_HEIGHT_M - 0.05)
    corners = [(x, y) for x in (TABLE_X_RANGE[0] + 0.05, TABLE_X_RANGE[1] - 0.05)
               for y in (-ty + 0.05, ty - 0.05)]
    for i, (lx, ly) in enumerate(corners):
        world.add_geom(name=f"table_leg{i}", type=mujoco.mjtGeom.mjGEOM_BOX, size=[0.025, 0.025, leg_h],
                       pos=[lx, ly, -0.05 - leg_h], material="table_mat", contype=0, conaffinity=0)

    world.add_camera(name="agentview", pos=list(AGENTVIEW_POS),
                     xyaxes=_look_at_xyaxes(AGENTVIEW_POS, AGENTVIEW_TARGET), fovy=AGENTVIEW_FOVY_DEG)

    # Cubes (free bodies); placement is set at reset by the task.
    for k, name in enumerate(config.cubes):
        body = world.add_body(name=f"{name}_cube", pos=[0.5, -0.2 + 0.1 * k, CUBE_HALF_M])
        body.add_freejoint(name=f"{name}_cube_joint")
        body.add_geom(name=f"{name}_cube_geom", type=mujoco.mjtGeom.mjGEOM_BOX, size=[CUBE_HALF_M] * 3,
                      rgba=list(CUBE_COLOURS[name]), mass=CUBE_MASS_KG, contype=1, conaffinity=3,
                      condim=4, friction=[1.0, 0.01, 0.0001], solref=[0.01, 1.0])

    # Robot, attached at the base frame origin (world == base).
    robot = _robot_spec(assets)
    mount = world.add_frame(pos=[0, 0, 0])
    mount.attach_body(robot.body("base"), "robot/", "")

    # Post-attach fixes: collision filtering, gravity compensation, armature, actuators.
    for geom in spec.geoms:
        if geom.name.startswith("robot/") or (geom.parent and geom.parent.name.startswith("robot/")):
            if geom.contype != 0 or geom.conaffinity != 0:
                geom.contype, geom.conaffinity = 2, 0  # robot vs world/objects only, no self-collision
            if geom.group == 0:
                # robosuite's collision meshes (group 0) coincide with the visual meshes (group 1): drawn
                # together they z-fight into a speckled "glitter" surface. robosuite hides group 0; so do we.
                geom.group = ROBOT_COLLISION_GROUP
    for material in spec.materials:
        if material.name.startswith("robot/"):
            # robosuite's specular 0.5 / shininess 0.45 gives hard highlights on the faceted meshes: matte.
            material.specular, material.shininess, material.reflectance = ROBOT_SPECULAR, ROBOT_SHININESS, 0.0
    for body in spec.bodies:
        if body.name.startswith("robot/"):
            body.gravcomp = 1.0
    for i, jname in enumerate(ARM_JOINTS_INTERNAL):
        j = spec.joint(jname)
        j.armature = ARM_ARMATURE[i]
        _set_damping(j, 0.0)
        act = spec.add_actuator(name=ARM_ACTUATORS_INTERNAL[i], target=jname,
                                trntype=mujoco.mjtTrn.mjTRN_JOINT)
        act.set_to_position(kp=ARM_KP[i], kv=ARM_KD[i])
        act.ctrllimited = False
        act.forcelimited = True
        act.forcerange = [-ARM_TORQUE_LIMIT[i], ARM_TORQUE_LIMIT[i]]
    for i, jname in enumerate(FINGER_JOINTS_INTERNAL):
        j = spec.joint(jname)
        _set_damping(j, 60.0)
        j.armature = 0.5
        j.frictionloss = 0.5
        act = spec.add_actuator(name=FINGER_ACTUATORS_INTERNAL[i], target=jname,
                                trntype=mujoco.mjtTrn.mjTRN_JOINT)
        act.set_to_position(kp=GRIPPER_KP)
        act.ctrllimited = True
        act.ctrlrange = [0.0, FINGER_MAX_M] if i == 0 else [-FINGER_MAX_M, 0.0]
        act.forcelimited = True
        act.forcerange = [-GRIPPER_FORCE_LIMIT_N, GRIPPER_FORCE_LIMIT_N]
    spec.camera("robot/eye_in_hand").name = "robot/wrist"
    return spec


def build_model(config: SceneConfig | None = None) -> mujoco.MjModel:
    """Compile the scene."""
    return build_spec(config).compile()


def camera_name(name: str) -> str:
    """Internal MuJoCo camera name of a public camera name (``agentview`` or ``wrist``)."""
    if name == "agentview":
        return "agentview"
    if name == "wrist":
        return "robot/wrist"
    raise ValueError(f"unknown camera {name!r}; expected one of {CAMERAS}")
