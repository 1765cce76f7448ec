"""Benchmarks of the licensing agent, the vendor activation server and the floating
license server, each against a baseline measured in the same run. Entry point:
``python -m benchmarks`` (see :mod:`benchmarks.run`); results: docs/benchmarks.md.
"""

import os
import tempfile

# Every broker a benchmark starts (in this process or a child) keeps its trial marker here, never
# in the host's /var/lib/mqtt-licensing/trial.json: the runs would use up the host's one trial.
os.environ.setdefault(
    "MQTT_LICENSING_TRIAL_MARKER", os.path.join(tempfile.mkdtemp(prefix="mqtt-licensing-bench-"), "trial.json")
)
