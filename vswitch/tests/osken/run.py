"""Runs an app of this directory (learning_switch by default) as an os-ken
controller listening on 127.0.0.1:PORT (os-ken 4.2 ships no osken-manager):
python run.py PORT [APP]"""

import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from os_ken import cfg  # noqa: E402
from os_ken.base import app_manager  # noqa: E402
import os_ken.controller.controller  # noqa: E402,F401  (registers the listener options)

cfg.CONF(args=["--ofp-tcp-listen-port", sys.argv[1], "--ofp-listen-host", "127.0.0.1"], project="os_ken")
app_manager.AppManager.run_apps([sys.argv[2] if len(sys.argv) > 2 else "learning_switch"])
