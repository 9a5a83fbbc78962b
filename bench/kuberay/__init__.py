"""Helpers of bench/vs_kuberay.py: KubeRay's ray-operator built from its Go module, run as a host process against
the local control plane, and its RayService for the same workload serveplane runs.

The traffic generator is the e2e suite's (e2e/tests/trialkit.py, not a package): its folder goes on sys.path here,
last, so nothing of ours is shadowed.
"""
import sys
from pathlib import Path

_E2E_TESTS = str(Path(__file__).resolve().parents[2] / "e2e" / "tests")
if _E2E_TESTS not in sys.path:
    sys.path.append(_E2E_TESTS)
