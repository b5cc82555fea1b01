"""A stand-in node for supervisor tests: `python -m dummy_node MODE` (MODE via --ros-args -p)."""

import os
import signal
import sys
import time

mode = next((a.split(":=", 1)[1] for a in sys.argv if a.startswith("mode:=")), "run")
name = next((a.split(":=", 1)[1] for a in sys.argv if a.startswith("__node:=")), "dummy")
pidfile = os.environ.get("DUMMY_PID_DIR")
if pidfile:
    with open(os.path.join(pidfile, f"{name}.pid"), "w") as f:
        f.write(str(os.getpid()))
if mode == "stubborn":
    signal.signal(signal.SIGINT, signal.SIG_IGN)
elif signal.getsignal(signal.SIGINT) is signal.SIG_IGN:  # as run_node: take back an inherited "ignore"
    signal.signal(signal.SIGINT, signal.default_int_handler)
print(f"{name} up with args {' '.join(sys.argv[1:])}", flush=True)
if mode == "fail":
    time.sleep(0.5)
    print(f"{name} failing", flush=True)
    sys.exit(3)
try:
    while True:
        time.sleep(0.05)
except KeyboardInterrupt:
    print(f"{name} got SIGINT", flush=True)
    sys.exit(0)
