"""The operator's settings from environment variables: defaults, parsing, and clear errors."""
from __future__ import annotations

import pytest

from serveplane.operator.settings import Settings, SettingsError


def test_defaults_without_environment() -> None:
    settings = Settings.from_env({})
    assert settings == Settings()
    assert settings.default_image.startswith("serveplane/runtime:")


def test_values_are_parsed() -> None:
    settings = Settings.from_env(
        {"SERVEPLANE_POLL_FAST_S": "0.5", "SERVEPLANE_METRICS_PORT": "9100", "SERVEPLANE_LOG_LEVEL": "debug",
         "SERVEPLANE_NAMESPACES": "a, b,,"}
    )
    assert (settings.poll_fast_s, settings.metrics_port, settings.log_level) == (0.5, 9100, "DEBUG")
    assert settings.namespaces == ("a", "b")


@pytest.mark.parametrize(
    "name, value",
    [("SERVEPLANE_LOG_LEVEL", "LOUD"), ("SERVEPLANE_POLL_SLOW_S", "soon"), ("SERVEPLANE_POLL_FAST_S", "-1"),
     ("SERVEPLANE_HEALTH_PORT", "70000"), ("SERVEPLANE_DEFAULT_IMAGE", "")],
)
def test_bad_values_name_the_variable(name: str, value: str) -> None:
    with pytest.raises(SettingsError, match=name):
        Settings.from_env({name: value})
