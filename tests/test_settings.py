"""Tests for openai_utils.settings: every number in the table has a range, and both its ends are accepted."""

from __future__ import annotations

import pytest

from openai_utils import default, force_default_value
from openai_utils.settings import SETTINGS, Setting

NUMERIC = [s for s in SETTINGS if s.kind in ("int", "float")]


@pytest.mark.parametrize("setting", NUMERIC, ids=lambda s: s.key)
def test_every_number_has_a_range(setting: Setting) -> None:
    assert setting.minimum is not None and setting.maximum is not None, f"{setting.key} needs minimum= and maximum="
    assert setting.minimum <= setting.maximum
    if setting.default is not None:
        assert setting.minimum <= setting.default <= setting.maximum


@pytest.mark.parametrize("setting", NUMERIC, ids=lambda s: s.key)
def test_both_ends_of_every_range_are_accepted(setting: Setting) -> None:
    for bound in (setting.minimum, setting.maximum):
        force_default_value(setting.name, bound)
        assert default[setting.name] == bound
