"""Pure-Python control cores of the executor (numpy + pyyaml, no ROS).

Modules: limits (RobotLimits from YAML), kinematics (Franka FK / Jacobian / IK), chunk (Chunk
dataclass, action spaces), scheduler (timestamped action queue with blending), safety
(SafetyFilter), gripper (hysteresis binariser), executor_core (state machine), bench.
Time is float seconds of ROS time throughout; angles rad, lengths m.
"""

from .chunk import EEF_DELTA, JOINT_DELTA, JOINT_POSITION, Chunk, stamp_to_seconds
from .executor_core import Command, ExecutorCore, ExecutorState, ExecutorStatus, TrajectoryPoint, reorder_joint_state
from .gripper import GripperBinarizer, GripperEvent
from .kinematics import FrankaKinematics, ToolOffset
from .limits import RobotLimits, load_robot_limits
from .safety import FilterOutput, SafetyFilter
from .scheduler import ActionScheduler, AddResult, Sample

__all__ = [
    "ActionScheduler", "AddResult", "Chunk", "Command", "EEF_DELTA", "ExecutorCore", "ExecutorState",
    "ExecutorStatus", "FilterOutput", "FrankaKinematics", "GripperBinarizer", "GripperEvent", "JOINT_DELTA",
    "JOINT_POSITION", "RobotLimits", "Sample", "SafetyFilter", "ToolOffset", "TrajectoryPoint",
    "load_robot_limits", "reorder_joint_state", "stamp_to_seconds",
]
