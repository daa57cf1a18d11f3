"""Print setup.cfg's runtime requirements pinned to their lower bounds, one per line.

CI installs these into a second virtualenv so that each declared lower bound is a tested one.
"""

import configparser
import re
from pathlib import Path

config = configparser.ConfigParser()
config.read(Path(__file__).resolve().parents[1] / "setup.cfg")
for line in config["options"]["install_requires"].split("\n"):
    match = re.match(r"\s*([A-Za-z0-9_.-]+)\s*>=\s*([^,\s]+)", line)
    if match:
        print(f"{match.group(1)}=={match.group(2)}")
