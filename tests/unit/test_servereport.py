"""Serve's report as the operator reads it: the models name only fields Ray's own schema has, tolerate what they do
not read and nulls, and refuse an answer of the wrong shape (the observe step then reports it, not a crash)."""

from __future__ import annotations

import warnings

import pytest
from pydantic import BaseModel, ValidationError

from serveplane.operator import servereport

with warnings.catch_warnings():
    warnings.simplefilter("ignore", DeprecationWarning)
    from ray.serve import schema


@pytest.mark.parametrize(
    ("ours", "theirs"),
    [
        (servereport.ServeReport, schema.ServeInstanceDetails),
        (servereport.AppReport, schema.ApplicationDetails),
        (servereport.DeploymentReport, schema.DeploymentDetails),
        (servereport.ReplicaReport, schema.ReplicaDetails),
        (servereport.ProxyReport, schema.ProxyDetails),
    ],
)
def test_every_field_read_is_a_field_of_rays_schema(ours: type[BaseModel], theirs: type[BaseModel]) -> None:
    assert set(ours.model_fields) <= set(theirs.model_fields), set(ours.model_fields) - set(theirs.model_fields)


def test_unknown_fields_and_nulls_read_as_defaults() -> None:
    report = servereport.parse({
        "controller_info": {"node_id": "n"}, "proxy_location": "EveryNode", "target_capacity": None,
        "applications": {"hello": {"status": "RUNNING", "message": None, "deployments": None, "extra": 1}},
        "proxies": {"n": {"node_ip": "10.0.0.1", "status": "HEALTHY", "actor_id": "a", "log_file_path": "x"}},
    })
    hello = report.app("hello")
    assert hello is not None and hello.message == "" and hello.deployments == {}
    assert report.running({"hello"}) and not report.running({"hello", "other"})
    assert report.proxies["n"].status == "HEALTHY" and report.target_capacity is None


def test_an_answer_of_the_wrong_shape_is_refused() -> None:
    with pytest.raises(ValidationError):
        servereport.parse({"applications": ["not", "a", "map"]})
    with pytest.raises(ValidationError):
        servereport.parse({"applications": {"hello": {"deployments": {"d": {"replicas": "many"}}}}})


def test_running_replicas_are_counted_by_state() -> None:
    details = servereport.DeploymentReport.model_validate(
        {"status": "HEALTHY", "replicas": [{"state": "RUNNING"}, {"state": "STARTING"}, {"state": "RUNNING"}]}
    )
    assert details.running == 2
