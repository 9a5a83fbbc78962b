"""The pure decisions of leader election: when a lease may be taken, and the record that takes or keeps it."""

from __future__ import annotations

import pytest

from serveplane.operator import election

NOW = "2026-12-01T10:00:00.000000Z"


@pytest.mark.parametrize(
    ("holder", "unchanged_for", "free"),
    [
        ("", 0.0, True),  # released or never held
        ("me", 0.0, True),  # our own: renew
        ("other", 9.9, False),  # another holder still within its lease
        ("other", 10.0, True),  # silent for a whole lease duration: dead
    ],
)
def test_expired(holder: str, unchanged_for: float, free: bool) -> None:
    spec = {"holderIdentity": holder, "leaseDurationSeconds": 10}
    assert election.expired(spec, identity="me", unchanged_for_s=unchanged_for) is free


def test_claim_of_a_new_lease() -> None:
    assert election.claim({}, identity="me", duration_s=10, now=NOW) == {
        "holderIdentity": "me",
        "leaseDurationSeconds": 10,
        "renewTime": NOW,
        "acquireTime": NOW,
        "leaseTransitions": 0,
    }


def test_renewal_keeps_acquire_time_and_transitions() -> None:
    held = {
        "holderIdentity": "me",
        "leaseDurationSeconds": 10,
        "acquireTime": "then",
        "renewTime": "then",
        "leaseTransitions": 3,
    }
    renewed = election.claim(held, identity="me", duration_s=10, now=NOW)
    assert renewed["acquireTime"] == "then" and renewed["renewTime"] == NOW and renewed["leaseTransitions"] == 3


def test_takeover_counts_a_transition() -> None:
    held = {"holderIdentity": "other", "leaseDurationSeconds": 10, "acquireTime": "then", "leaseTransitions": 3}
    taken = election.claim(held, identity="me", duration_s=10, now=NOW)
    assert taken["holderIdentity"] == "me" and taken["acquireTime"] == NOW and taken["leaseTransitions"] == 4


def test_config_from_env() -> None:
    assert election.config_from_env({}) is None
    cfg = election.config_from_env(
        {"SERVEPLANE_LEADER_ELECTION": "true", "SERVEPLANE_LEADER_ELECTION_NAMESPACE": "ops", "POD_NAME": "op-1"}
    )
    assert cfg is not None and (cfg.namespace, cfg.identity, cfg.lease_duration_s) == ("ops", "op-1", 10.0)
    assert (cfg.name, cfg.renew_period_s, cfg.retry_period_s) == ("serveplane-operator", 2.0, 2.0)
    named = election.config_from_env(
        {
            "SERVEPLANE_LEADER_ELECTION": "1",
            "POD_NAMESPACE": "ops",
            "SERVEPLANE_LEASE_NAME": "mine",
            "SERVEPLANE_LEASE_RETRY_PERIOD_S": "1",
        }
    )
    assert named is not None and (named.namespace, named.name, named.retry_period_s) == ("ops", "mine", 1.0)


@pytest.mark.parametrize(
    ("env", "named"),
    [
        ({"SERVEPLANE_LEADER_ELECTION": "maybe"}, "SERVEPLANE_LEADER_ELECTION"),
        ({"SERVEPLANE_LEADER_ELECTION": "true"}, "SERVEPLANE_LEADER_ELECTION_NAMESPACE"),
        (
            {"SERVEPLANE_LEADER_ELECTION": "true", "POD_NAMESPACE": "ops", "SERVEPLANE_LEASE_DURATION_S": "1"},
            "SERVEPLANE_LEASE_DURATION_S",
        ),
        (
            {"SERVEPLANE_LEADER_ELECTION": "true", "POD_NAMESPACE": "ops", "SERVEPLANE_LEASE_RENEW_PERIOD_S": "x"},
            "SERVEPLANE_LEASE_RENEW_PERIOD_S",
        ),
        (
            {
                "SERVEPLANE_LEADER_ELECTION": "true",
                "POD_NAMESPACE": "ops",
                "SERVEPLANE_LEASE_RENEW_PERIOD_S": "5",
                "SERVEPLANE_LEASE_RETRY_PERIOD_S": "5",
            },
            "must be less than SERVEPLANE_LEASE_DURATION_S",
        ),
    ],
)
def test_bad_settings_name_the_variable(env: dict[str, str], named: str) -> None:
    with pytest.raises(ValueError, match=named):
        election.config_from_env(env)
