"""The operator's settings from environment variables: defaults, parsing, and clear errors."""
from __future__ import annotations

import json

import pytest

from serveplane.operator.manifests import netpol
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


def test_network_policy_access_is_parsed_from_json() -> None:
    peer = {"namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": "monitoring"}}}
    settings = Settings.from_env({
        "SERVEPLANE_OPERATOR_NAMESPACE": "ops",
        "SERVEPLANE_OPERATOR_POD_LABELS": '{"app": "op"}',
        "SERVEPLANE_RAY_METRICS_SOURCES": f"[{json.dumps(peer)}]",
    })
    assert settings.access == netpol.Access(
        operator_namespace="ops", operator_pod_labels={"app": "op"}, metrics_sources=(peer,)
    )
    assert Settings().access == netpol.Access()


@pytest.mark.parametrize(
    "name, value",
    [("SERVEPLANE_OPERATOR_POD_LABELS", "app=op"), ("SERVEPLANE_OPERATOR_POD_LABELS", "{}"),
     ("SERVEPLANE_OPERATOR_POD_LABELS", '{"replicas": 2}'), ("SERVEPLANE_RAY_METRICS_SOURCES", '{"a": 1}'),
     ("SERVEPLANE_RAY_METRICS_SOURCES", "[{}]"), ("SERVEPLANE_OPERATOR_NAMESPACE", "")],
)
def test_bad_access_values_name_the_variable(name: str, value: str) -> None:
    with pytest.raises(SettingsError, match=name):
        Settings.from_env({name: value})
