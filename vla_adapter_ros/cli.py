"""The `vla-adapter-ros` command: one entry point with subcommands."""

from __future__ import annotations

import argparse
import importlib
import importlib.metadata
import importlib.util
import os
import platform
import subprocess
import sys


class HelpFormatter(argparse.RawDescriptionHelpFormatter):
    """Every option's help ends with its default, '(default: X)', unless the help already speaks of the
    default; flags (no value) and options without a default (None) show none. Descriptions keep their lines."""

    def _get_help_string(self, action: argparse.Action) -> str:
        text = action.help or ""
        default = action.default
        if (action.help is argparse.SUPPRESS or "%(default)" in text or "default" in text.lower()
                or default is None or default is False or default is argparse.SUPPRESS or action.nargs == 0
                or (not action.option_strings and action.nargs not in ("?", "*"))):
            return text
        if isinstance(default, (list, tuple)):
            shown = " ".join(str(v) for v in default) or "none"
        else:
            shown = '""' if default == "" else str(default)
        return f"{text} (default: {shown.replace('%', '%%')})".strip()


# what `info` says when headless rendering fails, per MUJOCO_GL backend
RENDER_FIXES = {
    "egl": "install EGL (apt-get install libegl1; a GPU driver brings its own) or use "
           "MUJOCO_GL=osmesa (apt-get install libosmesa6)",
    "osmesa": "apt-get install libosmesa6, or unset MUJOCO_GL to use EGL",
    "glfw": "glfw needs a display; on a machine without one, unset MUJOCO_GL (EGL is the default)",
}
_RENDER_PROBE = (
    "import mujoco\n"
    "m = mujoco.MjModel.from_xml_string('<mujoco><worldbody><geom size=\"0.1\"/></worldbody></mujoco>')\n"
    "r = mujoco.Renderer(m, 16, 16)\n"
    "r.update_scene(mujoco.MjData(m))\n"
    "assert r.render().shape == (16, 16, 3)\n"
    "r.close()\n"
)


def render_probe(gl: str, timeout: float = 120.0) -> tuple[bool, str]:
    """Create a tiny offscreen MuJoCo renderer in a fresh process with MUJOCO_GL=`gl` (the backend is chosen
    when mujoco is imported, so not in this one). (True, '') or (False, the error's last line)."""
    env = dict(os.environ, MUJOCO_GL=gl)
    if gl == "egl":
        env.setdefault("PYOPENGL_PLATFORM", "egl")
    try:
        result = subprocess.run([sys.executable, "-c", _RENDER_PROBE], env=env, capture_output=True, text=True,
                                timeout=timeout)
    except subprocess.TimeoutExpired:
        return False, f"no image within {timeout:.0f} s"
    if result.returncode == 0:
        return True, ""
    lines = [line.strip() for line in (result.stderr or result.stdout).splitlines() if line.strip()]
    return False, (lines[-1] if lines else f"exit code {result.returncode}")[:200]


def rendering_line(gl: str, ok: bool, error: str) -> str:
    """The `info` line of the rendering check."""
    if ok:
        return f"  {'rendering':<13} ok (offscreen, MUJOCO_GL={gl})"
    fix = RENDER_FIXES.get(gl, "MUJOCO_GL must be egl (the default), osmesa or glfw")
    return (f"  {'rendering':<13} FAILED (MUJOCO_GL={gl}: {error}): the simulation cannot render its cameras; "
            f"fix: {fix}")


def checkpoint_line() -> str:
    """The `info` line about the demo's shipped simulation checkpoint (a note, not an error)."""
    from vla_adapter_ros.demo import SHIPPED_CHECKPOINT

    where = f"vla_adapter_ros/assets/{SHIPPED_CHECKPOINT.name}/"
    if (SHIPPED_CHECKPOINT / "config.yaml").is_file():
        return f"  {'checkpoint':<13} ok (shipped: {SHIPPED_CHECKPOINT})"
    return (f"  {'checkpoint':<13} none shipped ({where}): the demo runs a random-weight policy "
            "(pass --checkpoint DIR for a trained one)")


def _cmd_info(_args: argparse.Namespace) -> int:
    """Print what this installation can do: versions, interfaces, ROS middleware, torch device, and what the
    demo needs (MuJoCo, headless rendering, the shipped checkpoint)."""
    import vla_adapter_ros

    print(f"vla_adapter_ros {vla_adapter_ros.__version__} (Python {platform.python_version()})")
    ok = True
    for label, module in [
        ("interfaces", "vla_adapter_ros.msg"),
        ("rclpy", "rclpy"),
        ("torch", "torch"),
        ("transformers", "transformers"),
    ]:
        try:
            mod = importlib.import_module(module)
        except Exception as exc:  # report, do not crash: this command is for diagnosing installs
            print(f"  {label:<13} MISSING ({type(exc).__name__}: {exc})")
            ok = False
            continue
        version = getattr(mod, "__version__", "")
        print(f"  {label:<13} ok {version}".rstrip())
        if module == "torch":
            device = "cuda: " + mod.cuda.get_device_name(0) if mod.cuda.is_available() else "cpu"
            print(f"  {'device':<13} {device}")
    # the demo's simulation: mujoco (found without importing it: the import fixes the GL backend) and rendering
    if importlib.util.find_spec("mujoco") is None:
        print(f"  {'mujoco':<13} MISSING (pip install mujoco): the simulation (demo, collect, replay) cannot run")
        ok = False
    else:
        print(f"  {'mujoco':<13} ok {importlib.metadata.version('mujoco')}")
        gl = os.environ.get("MUJOCO_GL") or "egl"  # what vla_adapter_ros.sim uses unless MUJOCO_GL is set
        rendered, error = render_probe(gl)
        print(rendering_line(gl, rendered, error))
        ok = ok and rendered
    print(checkpoint_line())
    return 0 if ok else 1


def _cmd_up(args: argparse.Namespace) -> int:
    """Start the nodes of a stack file and keep them together until Ctrl-C or one of them exits."""
    from pathlib import Path

    from vla_adapter_ros.supervisor import StackError, run_stack

    try:
        return run_stack(args.stack, [Path(p) for p in args.params], namespace=args.namespace)
    except StackError as exc:  # also: a parameter file naming a node or key the nodes do not know
        for line in str(exc).splitlines():
            print(f"vla-adapter-ros up: {line}", file=sys.stderr)
        return 2


# Subcommands implemented by `module.add_arguments(parser)` and `module.run(args)`; the module (and
# what it imports, e.g. torch) is imported only when its subcommand runs.
LAZY_COMMANDS = {
    "demo": ("vla_adapter_ros.demo", "run the whole stack in the MuJoCo simulation: episodes, GIFs, plots, "
             "summary.json in outputs/demo/ (--output)"),
    "collect": ("vla_adapter_ros.collect", "record scripted-expert demonstrations in simulation (one bag per episode)"),
    "replay": ("vla_adapter_ros.replay", "closed loop without a model: replay a dataset's actions, or the scripted "
               "expert as the policy (--oracle), through the executor and the simulation"),
    "convert": ("vla_adapter_ros.data.convert", "convert recorded rosbags into a LeRobot-layout training set"),
    "train": ("vla_adapter_ros.train.finetune", "fine-tune (LoRA on the backbone + full policy) on a dataset"),
    "diagnose": ("vla_adapter_ros.train.diagnose", "does a trained policy use its inputs? (offline L1, input-swap test; --targeting: heads for the instructed cube?)"),
    "export": ("vla_adapter_ros.export", "a compact deployable copy of a trained checkpoint (fp16, no optimizer state)"),
    "libero-eval": ("vla_adapter_ros.libero.evaluate", "evaluate a checkpoint on LIBERO through the ROS nodes (success table)"),
    "bench": ("vla_adapter_ros.inference.bench", "benchmark the eager and optimised inference engines (latency, memory)"),
    "gpu-check": ("vla_adapter_ros.inference.gpu_check", "prove the GPU path in one command (GPU tests, bench, LoRA "
                  "step, vision towers vs timm): JSON + Markdown report"),
    "safety-fuzz": ("vla_adapter_ros.control.safety_fuzz",
                    "seeded adversarial fuzzing of the executor cores against independent hardware limits"),
}


def build_parser(selected: str | None = None) -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="vla-adapter-ros", description=__doc__, formatter_class=HelpFormatter)
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    info = sub.add_parser("info", help="check the installation and what the demo needs (MuJoCo, headless "
                          "rendering, the shipped checkpoint); print versions", formatter_class=HelpFormatter)
    info.set_defaults(func=_cmd_info)
    up = sub.add_parser("up", help="start a stack of nodes (without ros2 launch)", formatter_class=HelpFormatter)
    up.add_argument("stack", help="stack file, e.g. config/sim_stack.yaml")
    up.add_argument("--params", action="append", default=[], metavar="YAML",
                    help="extra parameter file passed to every node (repeatable; later files win); a node or key "
                         "the nodes do not declare is an error (default: none)")
    up.add_argument("--namespace", default="", metavar="NS",
                    help="ROS namespace for the whole stack, e.g. robot1: topics, services and actions move under "
                         "/robot1, a simulation's clock to /robot1/clock (default: the root namespace)")
    up.set_defaults(func=_cmd_up)
    for name, (module, help_text) in LAZY_COMMANDS.items():
        command = sub.add_parser(name, help=help_text, description=help_text, formatter_class=HelpFormatter)
        if name == selected:
            mod = importlib.import_module(module)
            mod.add_arguments(command)
            command.set_defaults(func=mod.run)
    return parser


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    selected = next((a for a in argv if not a.startswith("-")), None)
    args = build_parser(selected).parse_args(argv)
    return args.func(args)


if __name__ == "__main__":
    sys.exit(main())
