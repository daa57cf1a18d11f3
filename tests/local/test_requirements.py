"""The requirements setup() installs are the ones setup.cfg's `local` extra declares."""

from __future__ import annotations

from pathlib import Path


def test_the_local_extra_in_setup_cfg_is_what_setup_installs() -> None:
    import configparser

    from openai_utils.local.requirements import CONVERTER_REQUIREMENTS, ENGINE_REQUIREMENT

    parser = configparser.ConfigParser()
    parser.read(Path(__file__).resolve().parents[2] / "setup.cfg")
    declared = [line.strip() for line in parser["options.extras_require"]["local"].splitlines() if line.strip()]
    assert declared == [ENGINE_REQUIREMENT, *CONVERTER_REQUIREMENTS]
