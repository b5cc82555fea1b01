"""What RViz and Foxglove need to draw the MuJoCo scene: a URDF, TF frames and camera intrinsics.

Everything is derived from the compiled ``mujoco.MjModel`` (and ``MjData`` for moving frames), so a
change of the scene's meshes, materials or cameras carries over. No ROS imports: sim_node turns the
results into std_msgs/String, tf2_msgs/TFMessage and sensor_msgs/CameraInfo.

Frames (all names get ``tf_prefix`` in front):

- the root link ``root`` (sim_node's ``frame_id``, "base") is MuJoCo's world body, which is the robot
  base frame (``link0``) in this scene; its visuals are the world's static geoms (table; planes skipped);
- one link per body of the kinematic tree that hangs below the world through hinge, slide or no
  joints, named ``link_prefix`` + the last part of the MuJoCo body name (``robot/link3`` ->
  ``fr3_link3``, ``robot/gripper/leftfinger`` -> ``fr3_leftfinger``);
- selected sites as fixed child links (``robot/tcp`` -> ``fr3_hand_tcp``, the pose eef_pose reports);
- free-floating bodies (the cubes) are no URDF links: TF frames below the root only, named by their
  MuJoCo body name (``red_cube``);
- one frame per camera in the ROS optical convention (z forward, x right, y down), named by its public
  name (``agentview``, ``wrist``: the images' frame_id), child of its body's link.

Quaternions: MuJoCo stores (w, x, y, z); everything this module returns is ROS's (x, y, z, w).
"""

from __future__ import annotations

import math
import xml.etree.ElementTree as ET
from dataclasses import dataclass, field
from typing import NamedTuple

import mujoco
import numpy as np

# MuJoCo camera frame (x right, y up, looking along -z) -> optical frame (x right, y down, z forward):
# a half turn about x, (w, x, y, z).
MJ_CAMERA_TO_OPTICAL_WXYZ = np.array([0.0, 1.0, 0.0, 0.0])

# The geom groups the cameras draw (MuJoCo's default mjvOption: groups 0, 1, 2); the scene puts the
# robot's collision meshes in group 3. The default geom rgba: a geom with a material and this rgba takes
# the material's colour (MuJoCo's own rule).
_VISIBLE_GROUPS = tuple(int(g) for g in np.flatnonzero(mujoco.MjvOption().geomgroup))
_DEFAULT_GEOM_RGBA = (0.5, 0.5, 0.5, 1.0)
_FREE, _SLIDE, _HINGE = (int(t) for t in (mujoco.mjtJoint.mjJNT_FREE, mujoco.mjtJoint.mjJNT_SLIDE,
                                          mujoco.mjtJoint.mjJNT_HINGE))


class Transform(NamedTuple):
    """One TF edge: child's pose in parent's frame; quaternion (x, y, z, w)."""

    parent: str
    child: str
    xyz: tuple[float, float, float]
    quat_xyzw: tuple[float, float, float, float]


@dataclass(frozen=True)
class Frames:
    """Which MuJoCo objects become which frames (see the module docstring); build with :func:`frames`."""

    root: str
    links: dict[int, str]  # body id -> link name (0 = world = root), tree order
    joints: dict[int, tuple[str, float]]  # joint id -> (public joint name, sign: public = sign * qpos)
    sites: dict[int, str]  # site id -> link name
    objects: dict[int, str]  # free body id -> frame name
    cameras: dict[int, str]  # camera id -> optical frame name
    body_joints: dict[int, int] = field(default_factory=dict)  # body id -> id of the joint that moves it


def _name(model: mujoco.MjModel, obj: mujoco.mjtObj, i: int) -> str:
    return mujoco.mj_id2name(model, obj, i) or ""


def _short(name: str) -> str:
    return name.rsplit("/", 1)[-1]


def camera_id(model: mujoco.MjModel, camera: str) -> int:
    """Id of a camera by its MuJoCo name, or by its public name (the last part: ``wrist`` -> ``robot/wrist``)."""
    cid = mujoco.mj_name2id(model, mujoco.mjtObj.mjOBJ_CAMERA, camera)
    if cid >= 0:
        return cid
    matches = [i for i in range(model.ncam) if _short(_name(model, mujoco.mjtObj.mjOBJ_CAMERA, i)) == camera]
    if len(matches) != 1:
        names = [_name(model, mujoco.mjtObj.mjOBJ_CAMERA, i) for i in range(model.ncam)]
        raise ValueError(f"no camera {camera!r} in the model (cameras: {names})")
    return matches[0]


def frames(model: mujoco.MjModel, root: str = "base", link_prefix: str = "fr3_", tf_prefix: str = "",
           joint_names: dict[str, tuple[str, float]] | None = None, sites: dict[str, str] | None = None,
           cameras: list[str] | tuple[str, ...] | None = None) -> Frames:
    """Name the frames of a model.

    Args:
        root: name of the world body's link (sim_node's ``frame_id``).
        link_prefix: prepended to the bodies' short names (the joint prefix, so links match Franka's).
        tf_prefix: prepended to every frame name (two namespaced sims sharing /tf).
        joint_names: MuJoCo joint name -> (public name, sign) where the published joint position is
            ``sign * qpos`` (the sim publishes finger_joint2 negated); default: the short name, sign 1.
        sites: MuJoCo site name -> link name (without prefixes) of sites to add as fixed links.
        cameras: cameras (MuJoCo or public names) to give an optical frame; default all, by public name.
    """
    joint_names = joint_names or {}
    obj = mujoco.mjtObj
    links: dict[int, str] = {0: tf_prefix + root}
    objects: dict[int, str] = {}
    joints: dict[int, tuple[str, float]] = {}
    body_joints: dict[int, int] = {}
    for b in range(1, model.nbody):
        parent = int(model.body_parentid[b])
        jnt = [int(j) for j in range(model.body_jntadr[b], model.body_jntadr[b] + model.body_jntnum[b])]
        if parent == 0 and any(int(model.jnt_type[j]) == _FREE for j in jnt):
            objects[b] = tf_prefix + _name(model, obj.mjOBJ_BODY, b)
            continue
        if parent not in links:
            continue  # below a free body
        if len(jnt) > 1 or any(int(model.jnt_type[j]) not in (_HINGE, _SLIDE) for j in jnt):
            raise ValueError(f"body {_name(model, obj.mjOBJ_BODY, b)!r}: only one hinge or slide joint per body "
                             "can become a URDF joint")
        links[b] = tf_prefix + link_prefix + _short(_name(model, obj.mjOBJ_BODY, b))
        if jnt:
            j = jnt[0]
            mj_name = _name(model, obj.mjOBJ_JOINT, j)
            joints[j] = joint_names.get(mj_name, (_short(mj_name), 1.0))
            body_joints[b] = j
            if int(model.jnt_type[j]) == _HINGE and np.any(model.jnt_pos[j] != 0):
                raise ValueError(f"joint {mj_name!r}: a hinge off the body origin has no URDF equivalent")
    site_links = {}
    for site, link in (sites or {}).items():
        sid = mujoco.mj_name2id(model, obj.mjOBJ_SITE, site)
        if sid < 0:
            raise ValueError(f"no site {site!r} in the model")
        site_links[sid] = tf_prefix + link_prefix + link
    cams = {}
    for camera in (cameras if cameras is not None else
                   [_short(_name(model, obj.mjOBJ_CAMERA, i)) for i in range(model.ncam)]):
        cams[camera_id(model, camera)] = tf_prefix + camera
    names = [*links.values(), *site_links.values(), *objects.values(), *cams.values()]
    duplicates = sorted({n for n in names if names.count(n) > 1})
    if duplicates:
        raise ValueError(f"frame names used twice: {duplicates}")
    return Frames(tf_prefix + root, links, joints, site_links, objects, cams, body_joints)


# ---------------------------------------------------------------------------------------------- rotations
def _quat_mul(a, b) -> np.ndarray:
    out = np.empty(4)
    mujoco.mju_mulQuat(out, np.asarray(a, float), np.asarray(b, float))
    return out


def _quat_conj(q) -> np.ndarray:
    return np.array([q[0], -q[1], -q[2], -q[3]], dtype=float)


def _quat_rotate(q, v) -> np.ndarray:
    out = np.empty(3)
    mujoco.mju_rotVecQuat(out, np.asarray(v, float), np.asarray(q, float))
    return out


def _axis_angle_wxyz(axis, angle: float) -> np.ndarray:
    axis = np.asarray(axis, float) / np.linalg.norm(axis)
    return np.array([math.cos(angle / 2), *(math.sin(angle / 2) * axis)])


def _xyzw(q_wxyz) -> tuple[float, float, float, float]:
    q = np.asarray(q_wxyz, float)
    q = q / np.linalg.norm(q)
    if q[0] < 0:  # one of the two equal quaternions, w >= 0
        q = -q
    return float(q[1]), float(q[2]), float(q[3]), float(q[0])


def _rpy(q_wxyz) -> tuple[float, float, float]:
    """URDF roll-pitch-yaw (R = Rz(yaw) Ry(pitch) Rx(roll)) of a (w, x, y, z) quaternion."""
    r = np.empty(9)
    mujoco.mju_quat2Mat(r, np.asarray(q_wxyz, float) / np.linalg.norm(q_wxyz))
    r = r.reshape(3, 3)
    pitch = math.atan2(-r[2, 0], math.hypot(r[0, 0], r[1, 0]))
    if math.hypot(r[0, 0], r[1, 0]) < 1e-9:  # gimbal lock: roll and yaw share an axis; put it all in yaw
        return 0.0, pitch, math.atan2(-r[0, 1], r[1, 1])
    return math.atan2(r[2, 1], r[2, 2]), pitch, math.atan2(r[1, 0], r[0, 0])


def _relative(pos_parent, quat_parent, pos_child, quat_child) -> tuple[np.ndarray, np.ndarray]:
    """Child pose in the parent's frame; (w, x, y, z) quaternions."""
    qinv = _quat_conj(quat_parent)
    return _quat_rotate(qinv, np.asarray(pos_child) - np.asarray(pos_parent)), _quat_mul(qinv, quat_child)


def _fmt(values) -> str:
    return " ".join(repr(float(v) + 0.0) for v in values)  # + 0.0: no "-0.0"


# ---------------------------------------------------------------------------------------------- URDF
def _joint_origin(model: mujoco.MjModel, body: int, joint: int | None) -> tuple[np.ndarray, np.ndarray]:
    """The child's pose in its parent's frame at joint position 0 (MuJoCo's body_pos/body_quat hold it at
    qpos0, the joint's reference)."""
    pos, quat = model.body_pos[body].astype(float), model.body_quat[body].astype(float)
    if joint is None:
        return pos, quat
    q0 = float(model.qpos0[model.jnt_qposadr[joint]])
    axis = model.jnt_axis[joint]
    if int(model.jnt_type[joint]) == _HINGE:
        return pos, _quat_mul(quat, _axis_angle_wxyz(axis, -q0))
    return pos - q0 * _quat_rotate(quat, axis), quat


def _geom_rgba(model: mujoco.MjModel, g: int) -> np.ndarray:
    rgba = model.geom_rgba[g]
    mat = int(model.geom_matid[g])
    if mat >= 0 and np.allclose(rgba, _DEFAULT_GEOM_RGBA):
        return model.mat_rgba[mat]
    return rgba


def _mesh_file(model: mujoco.MjModel, mesh: int) -> str:
    adr = int(model.mesh_pathadr[mesh])
    if adr < 0:
        return ""
    paths = bytes(model.paths)
    return paths[adr:paths.index(b"\0", adr)].decode()


def _visuals(model: mujoco.MjModel, body: int) -> list[tuple[np.ndarray, np.ndarray, ET.Element, np.ndarray]]:
    """(pos, quat wxyz, geometry element, rgba) of the body's visible geoms, in the body's frame."""
    gt = mujoco.mjtGeom
    out = []
    for g in range(model.body_geomadr[body], model.body_geomadr[body] + model.body_geomnum[body]):
        rgba = _geom_rgba(model, g)
        if int(model.geom_group[g]) not in _VISIBLE_GROUPS or rgba[3] <= 0:
            continue
        pos, quat, size, kind = model.geom_pos[g], model.geom_quat[g], model.geom_size[g], int(model.geom_type[g])
        if kind == int(gt.mjGEOM_BOX):
            out.append((pos, quat, ET.Element("box", size=_fmt(2 * size)), rgba))
        elif kind == int(gt.mjGEOM_SPHERE):
            out.append((pos, quat, ET.Element("sphere", radius=_fmt(size[:1])), rgba))
        elif kind == int(gt.mjGEOM_CYLINDER):
            out.append((pos, quat, ET.Element("cylinder", radius=_fmt(size[:1]), length=_fmt([2 * size[1]])), rgba))
        elif kind == int(gt.mjGEOM_CAPSULE):  # a cylinder and two end spheres: exactly the capsule
            out.append((pos, quat, ET.Element("cylinder", radius=_fmt(size[:1]), length=_fmt([2 * size[1]])), rgba))
            for end in (1.0, -1.0):
                out.append((pos + _quat_rotate(quat, [0, 0, end * size[1]]), quat,
                            ET.Element("sphere", radius=_fmt(size[:1])), rgba))
        elif kind == int(gt.mjGEOM_MESH):
            mesh = int(model.geom_dataid[g])
            path = _mesh_file(model, mesh)
            if not path:
                continue  # a mesh from memory: nothing RViz could load
            # MuJoCo moved the mesh's vertices to its centre of mass and principal axes (mesh_pos,
            # mesh_quat) and the geom frame with them: undo that, the file holds the original vertices.
            pos = pos - _quat_rotate(_quat_mul(quat, _quat_conj(model.mesh_quat[mesh])), model.mesh_pos[mesh])
            quat = _quat_mul(quat, _quat_conj(model.mesh_quat[mesh]))
            out.append((pos, quat, ET.Element("mesh", filename="file://" + path,
                                               scale=_fmt(model.mesh_scale[mesh])), rgba))
        # planes, height fields, ellipsoids, SDFs: not drawn
    return out


def urdf(model: mujoco.MjModel, name: str = "fr3_sim", description: Frames | None = None) -> str:
    """URDF (a string) of the model's kinematic tree for RViz's RobotModel; ``description`` from
    :func:`frames` (default ``frames(model)``). Meshes are referenced by absolute ``file://`` paths."""
    fr = description or frames(model)
    robot = ET.Element("robot", name=name)
    colours: dict[tuple, str] = {}
    for body, link_name in fr.links.items():
        link = ET.SubElement(robot, "link", name=link_name)
        for pos, quat, geometry, rgba in _visuals(model, body):
            visual = ET.SubElement(link, "visual")
            ET.SubElement(visual, "origin", xyz=_fmt(pos), rpy=_fmt(_rpy(quat)))
            ET.SubElement(visual, "geometry").append(geometry)
            key = tuple(round(float(c), 4) for c in rgba)
            material = ET.SubElement(visual, "material", name=colours.setdefault(key, f"colour{len(colours)}"))
            ET.SubElement(material, "color", rgba=_fmt(key))
    for body, link_name in fr.links.items():
        if body == 0:
            continue
        j = fr.body_joints.get(body)
        pos, quat = _joint_origin(model, body, j)
        if j is None:
            joint = ET.SubElement(robot, "joint", name=f"{link_name}_fixed", type="fixed")
        else:
            public, sign = fr.joints[j]
            hinge = int(model.jnt_type[j]) == _HINGE
            joint = ET.SubElement(robot, "joint", name=public, type="revolute" if hinge else "prismatic")
        ET.SubElement(joint, "parent", link=fr.links[int(model.body_parentid[body])])
        ET.SubElement(joint, "child", link=link_name)
        ET.SubElement(joint, "origin", xyz=_fmt(pos), rpy=_fmt(_rpy(quat)))
        if j is not None:
            ET.SubElement(joint, "axis", xyz=_fmt(sign * model.jnt_axis[j]))
            lower, upper = sorted(sign * model.jnt_range[j]) if model.jnt_limited[j] else (-math.pi, math.pi)
            # effort: the joint's actuator's force limit (0 when there is none); the model knows no velocity limit
            forces = [np.max(np.abs(model.actuator_forcerange[a])) for a in range(model.nu)
                      if model.actuator_trnid[a, 0] == j and model.actuator_forcelimited[a]
                      and int(model.actuator_trntype[a]) == int(mujoco.mjtTrn.mjTRN_JOINT)]
            ET.SubElement(joint, "limit", lower=_fmt([lower]), upper=_fmt([upper]),
                          effort=_fmt([max(forces, default=0.0)]), velocity="0.0")
    for site, link_name in fr.sites.items():
        ET.SubElement(robot, "link", name=link_name)
        joint = ET.SubElement(robot, "joint", name=f"{link_name}_fixed", type="fixed")
        ET.SubElement(joint, "parent", link=fr.links[int(model.site_bodyid[site])])
        ET.SubElement(joint, "child", link=link_name)
        ET.SubElement(joint, "origin", xyz=_fmt(model.site_pos[site]), rpy=_fmt(_rpy(model.site_quat[site])))
    ET.indent(robot)
    return '<?xml version="1.0"?>\n' + ET.tostring(robot, encoding="unicode") + "\n"


# ---------------------------------------------------------------------------------------------- TF
def _camera_fixed(model: mujoco.MjModel, cam: int) -> bool:
    return int(model.cam_mode[cam]) == int(mujoco.mjtCamLight.mjCAMLIGHT_FIXED)


def static_transforms(model: mujoco.MjModel, description: Frames) -> list[Transform]:
    """The frames that never move relative to their parent: fixed URDF joints, sites, fixed cameras."""
    fr, out = description, []
    for body, link_name in fr.links.items():
        if body != 0 and body not in fr.body_joints:
            out.append(Transform(fr.links[int(model.body_parentid[body])], link_name,
                                 tuple(float(v) for v in model.body_pos[body]), _xyzw(model.body_quat[body])))
    for site, link_name in fr.sites.items():
        out.append(Transform(fr.links[int(model.site_bodyid[site])], link_name,
                             tuple(float(v) for v in model.site_pos[site]), _xyzw(model.site_quat[site])))
    for cam, frame in fr.cameras.items():
        if _camera_fixed(model, cam):
            quat = _quat_mul(model.cam_quat[cam], MJ_CAMERA_TO_OPTICAL_WXYZ)
            out.append(Transform(fr.links[int(model.cam_bodyid[cam])], frame,
                                 tuple(float(v) for v in model.cam_pos[cam]), _xyzw(quat)))
    return out


def body_transforms(model: mujoco.MjModel, data: mujoco.MjData, description: Frames) -> list[Transform]:
    """The moving frames at ``data``'s state (after mj_forward / mj_step): links driven by a joint relative
    to their parent link, free bodies and tracking cameras relative to the root."""
    fr, out = description, []
    xquat = data.xquat
    for body in fr.body_joints:
        parent = int(model.body_parentid[body])
        pos, quat = _relative(data.xpos[parent], xquat[parent], data.xpos[body], xquat[body])
        out.append(Transform(fr.links[parent], fr.links[body], tuple(float(v) for v in pos), _xyzw(quat)))
    for body, frame in fr.objects.items():
        pos, quat = _relative(data.xpos[0], xquat[0], data.xpos[body], xquat[body])
        out.append(Transform(fr.root, frame, tuple(float(v) for v in pos), _xyzw(quat)))
    for cam, frame in fr.cameras.items():
        if not _camera_fixed(model, cam):
            cam_quat = np.empty(4)
            mujoco.mju_mat2Quat(cam_quat, data.cam_xmat[cam])
            pos, quat = _relative(data.xpos[0], xquat[0], data.cam_xpos[cam], cam_quat)
            out.append(Transform(fr.root, frame, tuple(float(v) for v in pos),
                                 _xyzw(_quat_mul(quat, MJ_CAMERA_TO_OPTICAL_WXYZ))))
    return out


# ---------------------------------------------------------------------------------------------- cameras
def camera_info(model: mujoco.MjModel, camera: str, width: int, height: int) -> dict:
    """Pinhole intrinsics of a rendered camera, as sensor_msgs/CameraInfo's fields (row-major lists).

    MuJoCo renders a symmetric frustum with vertical field of view ``fovy`` and square pixels:
    fy = height / (2 tan(fovy / 2)), fx = fy. The principal point is the image's centre in ROS's pixel
    coordinates, where integer coordinates are pixel centres (image_geometry, OpenCV):
    cx = (width - 1) / 2, cy = (height - 1) / 2. No distortion (plumb_bob, zeros); R = identity;
    P = [K | 0] (a monocular camera).
    """
    cid = camera_id(model, camera)
    fy = height / (2.0 * math.tan(math.radians(float(model.cam_fovy[cid])) / 2.0))
    fx, cx, cy = fy, (width - 1) / 2.0, (height - 1) / 2.0
    return {
        "width": int(width),
        "height": int(height),
        "distortion_model": "plumb_bob",
        "d": [0.0] * 5,
        "k": [fx, 0.0, cx, 0.0, fy, cy, 0.0, 0.0, 1.0],
        "r": [1.0, 0.0, 0.0, 0.0, 1.0, 0.0, 0.0, 0.0, 1.0],
        "p": [fx, 0.0, cx, 0.0, 0.0, fy, cy, 0.0, 0.0, 0.0, 1.0, 0.0],
    }


def camera_info_topic(image_topic: str) -> str:
    """The CameraInfo topic next to an image topic (image_transport's rule): ``camera/wrist/image_raw`` ->
    ``camera/wrist/camera_info``."""
    head, _, _ = image_topic.rpartition("/")
    return f"{head}/camera_info" if head else "camera_info"


def sim_frames(model: mujoco.MjModel, joint_prefix: str = "fr3_", root: str = "base", tf_prefix: str = "",
               cameras: list[str] | tuple[str, ...] | None = None) -> Frames:
    """:func:`frames` for the scene of :mod:`vla_adapter_ros.sim.scene`: the joints get the names (and
    signs) sim_node publishes on joint_states, the TCP site is ``<joint_prefix>hand_tcp``."""
    from vla_adapter_ros.sim import scene

    names = {internal: (f"{joint_prefix}joint{i}", 1.0) for i, internal in enumerate(scene.ARM_JOINTS_INTERNAL, 1)}
    # the sim publishes both finger joints >= 0 (Franka's convention); MuJoCo's finger_joint2 runs negative
    names[scene.FINGER_JOINTS_INTERNAL[0]] = (f"{joint_prefix}finger_joint1", 1.0)
    names[scene.FINGER_JOINTS_INTERNAL[1]] = (f"{joint_prefix}finger_joint2", -1.0)
    return frames(model, root=root, link_prefix=joint_prefix, tf_prefix=tf_prefix, joint_names=names,
                  sites={scene.TCP_SITE: "hand_tcp"}, cameras=cameras)
