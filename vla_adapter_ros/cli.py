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


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="vla-adapter-ros", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    info = sub.add_parser("info", help="check the installation and print versions")
    info.set_defaults(func=_cmd_info)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    return args.func(args)


if __name__ == "__main__":
    sys.exit(main())
