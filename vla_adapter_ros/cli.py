"""The `vla-adapter-ros` command: one entry point with subcommands."""

from __future__ import annotations

import argparse
import importlib
import platform
import sys


def _cmd_info(_args: argparse.Namespace) -> int:
    """Print what this installation can do: versions, interfaces, ROS middleware, torch device."""
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
    return 0 if ok else 1


def _cmd_up(args: argparse.Namespace) -> int:
    """Start the nodes of a stack file and keep them together until Ctrl-C or one of them exits."""
    from pathlib import Path

    from vla_adapter_ros.supervisor import StackError, run_stack

    try:
        return run_stack(args.stack, [Path(p) for p in args.params])
    except StackError as exc:
        print(f"vla-adapter-ros up: {exc}", file=sys.stderr)
        return 2


# Subcommands implemented by `module.add_arguments(parser)` and `module.run(args)`; the module (and
# what it imports, e.g. torch) is imported only when its subcommand runs.
LAZY_COMMANDS = {
    "demo": ("vla_adapter_ros.demo", "run the whole stack in the MuJoCo simulation: episodes, GIFs, plots"),
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
    parser = argparse.ArgumentParser(prog="vla-adapter-ros", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    info = sub.add_parser("info", help="check the installation and print versions")
    info.set_defaults(func=_cmd_info)
    up = sub.add_parser("up", help="start a stack of nodes (without ros2 launch)")
    up.add_argument("stack", help="stack file, e.g. config/sim_stack.yaml")
    up.add_argument("--params", action="append", default=[], metavar="YAML",
                    help="extra parameter file passed to every node (repeatable; later files win)")
    up.set_defaults(func=_cmd_up)
    for name, (module, help_text) in LAZY_COMMANDS.items():
        command = sub.add_parser(name, help=help_text, description=help_text)
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
