"""Small helpers shared by the rclpy nodes: parameters, time, the process life cycle.

Parameters: every node has a module-level ``DEFAULTS`` dict (name -> default value; what parameter
files are checked against) and a ``PARAMETERS`` dict (name -> ``Param``: description, range, choices,
whether it may change at run time). ``declare`` declares them with a ParameterDescriptor (``ros2 param
describe`` shows the description, range and read-only flag), refuses values outside ``choices``, and
refuses a parameter given to the node that it does not declare (a typo in a params file or ``-p``
would otherwise be ignored silently). ``live_parameters`` makes the ``live`` ones settable with
``ros2 param set`` through a validating callback; the others are read-only (read once at start-up).

Process life cycle (``run_node``): SIGINT and SIGTERM (one or several) stop the node in order: the
executor stops, the node's ``teardown`` stops its worker threads (which close what they made, e.g.
renderers), then the node and the ROS context go; exit code 0, no traceback.
"""

from __future__ import annotations

import difflib
import signal
import sys
import threading
from dataclasses import dataclass
from typing import Any, Callable, Mapping, Optional

import rclpy
from builtin_interfaces.msg import Duration
from rcl_interfaces.msg import FloatingPointRange, IntegerRange, ParameterDescriptor, SetParametersResult
from rclpy.clock import Clock, ClockType
from rclpy.executors import ExternalShutdownException, MultiThreadedExecutor, SingleThreadedExecutor
from rclpy.node import Node
from rclpy.signals import SignalHandlerOptions
from rclpy.time import Time

# parameters rclpy itself declares on every node (accepted from parameter files and -p)
ROS_PARAMETERS = ("use_sim_time", "start_type_description_service")
ROS_PARAMETER_PREFIXES = ("qos_overrides.",)  # declared when a publisher / subscription opts in


def stamp_seconds(stamp) -> float:
    """builtin_interfaces/Time or Duration -> float seconds."""
    return stamp.sec + stamp.nanosec * 1e-9


def seconds_to_duration(seconds: float) -> Duration:
    """Float seconds (>= 0) -> builtin_interfaces/Duration (nanosec always < 1e9)."""
    sec, nanosec = divmod(int(round(seconds * 1e9)), 1_000_000_000)
    return Duration(sec=sec, nanosec=nanosec)


def seconds_to_stamp(seconds: float):
    return Time(nanoseconds=int(round(seconds * 1e9))).to_msg()


def now_seconds(node: Node) -> float:
    return node.get_clock().now().nanoseconds * 1e-9


# ---------------------------------------------------------------------------------------- parameters
@dataclass(frozen=True)
class Param:
    """What a parameter means (its default is in the node's DEFAULTS).

    range: inclusive (low, high), ints for an integer parameter, floats for a double (rclpy refuses
    values outside it, also from parameter files); choices: the accepted strings; live: may be changed
    on a running node (``ros2 param set``), else read-only."""

    description: str
    range: Optional[tuple] = None
    choices: Optional[tuple] = None
    live: bool = False


def descriptor(name: str, default: Any, spec: Param) -> ParameterDescriptor:
    text = spec.description
    if spec.choices:
        text += f" (one of: {', '.join(spec.choices)})"
    text += " [live: ros2 param set]" if spec.live else " [read at start-up; restart the node to change it]"
    desc = ParameterDescriptor(name=name, description=text, read_only=not spec.live)
    if spec.choices:
        desc.additional_constraints = f"one of: {', '.join(spec.choices)}"
    if spec.range is not None:
        low, high = spec.range
        if isinstance(default, bool):
            raise TypeError(f"{name}: a boolean parameter has no range")
        if isinstance(default, int):
            desc.integer_range = [IntegerRange(from_value=int(low), to_value=int(high), step=0)]
        elif isinstance(default, float):
            desc.floating_point_range = [FloatingPointRange(from_value=float(low), to_value=float(high), step=0.0)]
        else:
            raise TypeError(f"{name}: a range needs an int or float default, got {default!r}")
    return desc


def check_specs(defaults: Mapping[str, Any], params: Mapping[str, Param]) -> None:
    """DEFAULTS and PARAMETERS of a node name the same parameters, and the defaults fit (import-time check)."""
    if set(defaults) != set(params):
        raise AssertionError(f"DEFAULTS / PARAMETERS differ: {sorted(set(defaults) ^ set(params))}")
    for name, spec in params.items():
        default = defaults[name]
        if spec.choices and default not in spec.choices:
            raise AssertionError(f"{name}: default {default!r} not in {spec.choices}")
        if spec.range is not None and not spec.range[0] <= default <= spec.range[1]:
            raise AssertionError(f"{name}: default {default!r} outside {spec.range}")


def closest(name: str, options) -> Optional[str]:
    """The option most like `name` (None when there are no options)."""
    options = sorted(options)
    match = difflib.get_close_matches(name, options, n=1, cutoff=0.5)
    if match:
        return match[0]
    if not options:
        return None
    return max(options, key=lambda o: difflib.SequenceMatcher(None, name, o).ratio())


def unknown_parameters(node: Node) -> list[str]:
    """One line per parameter given to the node (params file, -p) that it does not declare."""
    declared = set(node._parameters)  # noqa: SLF001 (rclpy keeps the overrides it ignores here only)
    problems = []
    for name in sorted(node._parameter_overrides):  # noqa: SLF001
        if name in declared or name in ROS_PARAMETERS or name.startswith(ROS_PARAMETER_PREFIXES):
            continue
        hint = closest(name, declared - set(ROS_PARAMETERS))
        problems.append(f"unknown parameter {name!r}" + (f" (did you mean {hint!r}?)" if hint else ""))
    return problems


def declare(node: Node, defaults: Mapping[str, Any], params: Optional[Mapping[str, Param]] = None,
            strict: bool = True) -> dict[str, Any]:
    """Declare parameters (overridable by params files / -p) and return their values.

    With `params` every parameter gets its descriptor (description, range, read-only unless live) and
    a value outside its choices is refused. A list parameter set to [] in a params file (ROS cannot type
    an empty array, so it stays uninitialized) reads as []. strict: refuse parameters given to the node
    that it does not declare (ValueError naming the closest declared one)."""
    from rclpy.exceptions import ParameterUninitializedException

    values = {}
    for name, default in defaults.items():
        spec = params.get(name) if params is not None else None
        if spec is not None:
            node.declare_parameter(name, default, descriptor(name, default, spec))
        else:
            node.declare_parameter(name, default)
        try:
            values[name] = node.get_parameter(name).value
        except ParameterUninitializedException:
            if not isinstance(default, list):
                raise
            values[name] = []
        if spec is not None and spec.choices and values[name] not in spec.choices:
            raise ValueError(f"{name} must be one of {', '.join(spec.choices)}; got {values[name]!r}")
    if strict:
        problems = unknown_parameters(node)
        if problems:
            raise ValueError("; ".join(problems))
    return values


def live_parameters(node: Node, params: Mapping[str, Param], values: dict[str, Any],
                    validate: Optional[Callable[[dict[str, Any], dict[str, Any]], Optional[str]]] = None,
                    apply: Optional[Callable[[dict[str, Any]], None]] = None) -> None:
    """Make the `live` parameters settable on the running node.

    A set request is refused (SetParametersResult with a reason) when a value is not one of the
    parameter's choices or when ``validate(values_after, changes)`` returns a reason; rclpy itself refuses read-only
    parameters, wrong types and values outside the range. Accepted changes are written into
    ``values`` (the node's parameter dict) and handed to ``apply(changes)``, then logged."""

    def on_set(parameters):
        changes = {}
        for parameter in parameters:
            spec = params.get(parameter.name)
            if spec is None:
                continue  # rclpy's own (use_sim_time)
            value = parameter.value
            if spec.choices and value not in spec.choices:
                reason = f"{parameter.name} must be one of {', '.join(spec.choices)}; got {value!r}"
                return SetParametersResult(successful=False, reason=reason)
            changes[parameter.name] = value
        if changes and validate is not None:
            merged = {**values, **changes}
            try:
                reason = validate(merged, changes)
            except Exception as exc:  # a refusal, never a crash of the parameter service
                reason = f"{type(exc).__name__}: {exc}"
            if reason:
                return SetParametersResult(successful=False, reason=reason)
        return SetParametersResult(successful=True)

    def post_set(parameters):
        changes = {p.name: p.value for p in parameters if p.name in params}
        if not changes:
            return
        values.update(changes)
        if apply is not None:
            apply(changes)
        node.get_logger().info("parameters set: " + ", ".join(f"{k}={v!r}" for k, v in changes.items()))

    node.add_on_set_parameters_callback(on_set)
    node.add_post_set_parameters_callback(post_set)


def watch_clock(node: Node, period: float = 5.0, repeat: int = 6) -> None:
    """With use_sim_time, say (on wall time) that no /clock has arrived: otherwise a node waiting for a
    simulator that is not publishing /clock looks hung. First after `period` s, then every `repeat`
    periods (throttled); once the clock runs, one line says so and the watch ends."""
    if not node.get_parameter("use_sim_time").value:
        return
    state = {"timer": None, "checks": 0, "warned": False}

    def check():
        if node.get_clock().now().nanoseconds > 0:
            if state["warned"]:
                node.get_logger().info("/clock received: running on simulation time")
            state["timer"].cancel()
            return
        if state["checks"] % repeat == 0:
            state["warned"] = True
            node.get_logger().warning("waiting for /clock (use_sim_time is true): nothing happens until the "
                                      "simulator publishes it")
        state["checks"] += 1

    state["timer"] = node.create_timer(period, check, clock=Clock(clock_type=ClockType.STEADY_TIME))


def fatal(node: Node | None, message: str) -> int:
    """Report a start-up failure in one line (``[FATAL] <message>``, on stderr) and return the exit code
    for main(). Not through the node's logger as well: that printed the same failure twice."""
    print(f"[FATAL] {message}", file=sys.stderr, flush=True)
    return 1


# ---------------------------------------------------------------------------------------- life cycle
class _SingleThreaded(SingleThreadedExecutor):
    # A SIGINT can shut the context down while the executor's constructor runs; rclpy's __del__ then
    # reads an attribute the constructor never set and prints a traceback. A class-level default keeps
    # that half-built executor's finaliser quiet.
    _sigint_gc = None


class _MultiThreaded(MultiThreadedExecutor):
    _sigint_gc = None


class StopSignals:
    """SIGINT / SIGTERM handling of a node process (instead of rclpy's, which shuts the ROS context down
    inside the signal handler, while worker threads may still publish).

    starting: a signal raises KeyboardInterrupt (a long model load is abandoned); running: it only
    asks the spin loop to end; stopping: further signals are ignored (no KeyboardInterrupt inside the
    clean-up)."""

    SIGNALS = (signal.SIGINT, signal.SIGTERM)

    def __init__(self):
        self.phase = "starting"
        self.requested = threading.Event()
        self.count = 0

    def install(self) -> None:
        for sig in self.SIGNALS:
            signal.signal(sig, self._handle)

    def ignore(self) -> None:
        """The process is about to exit: from now on ignore the signals at the OS level. (A Python handler
        would be reset to the default action while the interpreter finalises, and a second Ctrl-C arriving
        then would end the process with -SIGINT.)"""
        for sig in self.SIGNALS:
            signal.signal(sig, signal.SIG_IGN)

    def _handle(self, signum, frame) -> None:
        self.count += 1
        self.requested.set()
        if self.phase == "starting":
            self.phase = "stopping"
            raise KeyboardInterrupt


def run_node(
    make_node: Callable[[], Node],
    name: str,
    argv: list[str] | None = None,
    setup: Callable[[Node], None] | None = None,
    teardown: Callable[[Node], None] | None = None,
    num_threads: int = 2,
    stop_timeout: float = 1.5,
) -> int:
    """The whole life of a node process: init, build + `setup` (any failure: one clear line and exit
    code 1, never a hang), spin an executor (`num_threads` 1: single-threaded) until SIGINT / SIGTERM,
    then in this order: stop spinning, `teardown` (stop the node's threads), executor, node, context.
    Returns the process exit code; after a stop signal the process ends right there with code 0
    (`exit_now`: no slow interpreter finalisation)."""
    signals = StopSignals()
    # also takes SIGINT back from a non-interactive shell's background job (SIG_IGN): SIGINT is how the
    # supervisor and ros2 launch ask a node to stop gracefully
    signals.install()
    node = None
    try:
        rclpy.init(args=argv if argv is not None else sys.argv, signal_handler_options=SignalHandlerOptions.NO)
        node = make_node()
        if setup is not None:
            setup(node)
        signals.phase = "running"  # from here a signal only ends the spin loop (inside the try: no gap)
    except (Exception, KeyboardInterrupt) as exc:
        signals.phase = "stopping"
        interrupted = isinstance(exc, KeyboardInterrupt)
        if interrupted:  # Ctrl-C during a long start (model loading): no traceback
            print(f"{name}: interrupted while starting", file=sys.stderr, flush=True)
            code = 0
        else:
            code = fatal(node, f"{name}: cannot start: {type(exc).__name__}: {exc}")
        if node is not None:
            if teardown is not None:
                try:
                    teardown(node)
                except Exception:
                    pass
            node.destroy_node()
        _try_shutdown()
        signals.ignore()
        if interrupted:
            exit_now(code)
        return code
    executor = None
    try:
        if not signals.requested.is_set():
            executor = _SingleThreaded() if num_threads == 1 else _MultiThreaded(num_threads=num_threads)
            executor.add_node(node)
            # spin in short slices: a Python signal handler runs only between them
            while not signals.requested.is_set() and rclpy.ok():
                executor.spin_once(timeout_sec=0.1)
    except ExternalShutdownException:
        pass
    except Exception:
        if rclpy.ok() and not signals.requested.is_set():  # a real failure, not a shutdown race
            raise
    finally:
        signals.phase = "stopping"
        if teardown is not None:
            teardown(node)
        if executor is not None:
            if isinstance(executor, MultiThreadedExecutor):
                executor.shutdown(timeout_sec=stop_timeout, wait_for_threads=False)
            else:
                executor.shutdown(timeout_sec=stop_timeout)
        node.destroy_node()
        _try_shutdown()
        signals.ignore()
    if signals.requested.is_set():
        exit_now(0)
    return 0


def exit_now(code: int) -> None:
    """End a node process that was told to stop, once its ROS side is cleaned up: run the atexit handlers
    (e.g. coverage), flush the output, and skip the interpreter's finalisation, which with torch and
    MuJoCo loaded can take seconds (ros2 launch escalates to SIGTERM after 5 s; the goal is < 2 s)."""
    import atexit
    import ctypes
    import os

    try:
        atexit._run_exitfuncs()  # noqa: SLF001
    except Exception:
        pass
    for stream in (sys.stdout, sys.stderr):
        try:
            stream.flush()
        except Exception:
            pass
    try:
        ctypes.CDLL(None).fflush(None)  # the C streams rcutils logs to
    except Exception:
        pass
    os._exit(code)


def _try_shutdown() -> None:
    try:
        rclpy.try_shutdown()
    except Exception:  # a context that a signal kept from being initialised
        pass
