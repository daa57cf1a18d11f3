"""Print setup.cfg's runtime requirements pinned to their lower bounds, one per line, and those
of each optional extra named as an argument (`lowest-requirements.py redis`).

CI installs these into a second virtualenv so that each declared lower bound is a tested one.
"""

import configparser
import re
import sys
from pathlib import Path

config = configparser.ConfigParser()
config.read(Path(__file__).resolve().parents[1] / "setup.cfg")
lines = config["options"]["install_requires"].split("\n")
for extra in sys.argv[1:]:
    lines += config["options.extras_require"][extra].split("\n")
for line in lines:
    match = re.match(r"\s*([A-Za-z0-9_.-]+)\s*>=\s*([^,\s]+)", line)
    if match:
        print(f"{match.group(1)}=={match.group(2)}")
