"""The root conftest's CI rule, run in a pytest of its own (pytester): under CI=true a test that needs Ray, the
control plane or the node, or a module, fails where it would skip; other skips and xfails stay what they are."""
from __future__ import annotations

from pathlib import Path

import pytest

ROOT_CONFTEST = Path(__file__).resolve().parents[2] / "conftest.py"

TESTS = '''
import pytest


@pytest.fixture
def controlplane():
    pytest.skip("no control plane binary")


@pytest.mark.ray
def test_ray():
    pytest.skip("the ray CLI is not installed")


@pytest.mark.e2e
def test_node():
    pytest.skip("no node")


@pytest.mark.skipif(True, reason="not on this machine")
@pytest.mark.controlplane
def test_skipif_marked():
    pass


def test_uses_the_controlplane_fixture(controlplane):
    pass


def test_needs_a_module():
    pytest.importorskip("serveplane_no_such_module")


def test_plain_skip():
    pytest.skip("nothing to do with a missing part")


@pytest.mark.xfail(reason="known")
@pytest.mark.ray
def test_xfail():
    assert False


@pytest.mark.ray
def test_passes():
    pass
'''


@pytest.fixture
def suite(pytester: pytest.Pytester) -> pytest.Pytester:
    pytester.makeconftest(ROOT_CONFTEST.read_text())
    pytester.makeini("""
        [pytest]
        asyncio_default_fixture_loop_scope = function
        markers =
            ray: x
            controlplane: x
            e2e: x
    """)
    pytester.makepyfile(test_parts=TESTS)
    return pytester


@pytest.mark.parametrize("ci", [None, "", "false", "0"])
def test_outside_ci_skips_stay_skips(suite: pytest.Pytester, monkeypatch: pytest.MonkeyPatch, ci: str | None) -> None:
    if ci is None:
        monkeypatch.delenv("CI", raising=False)
    else:
        monkeypatch.setenv("CI", ci)
    result = suite.runpytest("-p", "no:cacheprovider")
    result.assert_outcomes(passed=1, skipped=6, xfailed=1)


@pytest.mark.parametrize("ci", ["true", "1", "TRUE", "yes"])
def test_under_ci_a_skip_for_a_missing_part_fails_with_its_reason(
    suite: pytest.Pytester, monkeypatch: pytest.MonkeyPatch, ci: str
) -> None:
    monkeypatch.setenv("CI", ci)
    result = suite.runpytest("-p", "no:cacheprovider", "-rA")
    # The plain skip stays a skip and the xfail an xfail; everything that needs a part fails, with the reason (an
    # error where the skip came in the test's setup: a skipif mark, a fixture).
    result.assert_outcomes(passed=1, skipped=1, xfailed=1, failed=3, errors=2)
    assert result.ret == pytest.ExitCode.TESTS_FAILED
    result.stdout.fnmatch_lines_random([
        "FAILED test_parts.py::test_ray*needs ray*the ray CLI is not installed*",
        "FAILED test_parts.py::test_node*needs e2e*no node*",
        "ERROR test_parts.py::test_skipif_marked*needs controlplane*not on this machine*",
        "ERROR test_parts.py::test_uses_the_controlplane_fixture*needs controlplane*no control plane binary*",
        "FAILED test_parts.py::test_needs_a_module*needs a module*could not import 'serveplane_no_such_module'*",
        "SKIPPED*nothing to do with a missing part*",
    ])


def test_under_ci_a_module_skipped_whole_is_an_error(suite: pytest.Pytester, monkeypatch: pytest.MonkeyPatch) -> None:
    suite.makepyfile(test_whole='import pytest\npytest.importorskip("serveplane_no_such_module")\n')
    monkeypatch.delenv("CI", raising=False)
    suite.runpytest("-p", "no:cacheprovider", "test_whole.py").assert_outcomes(skipped=1)
    monkeypatch.setenv("CI", "true")
    result = suite.runpytest("-p", "no:cacheprovider", "test_whole.py")
    result.assert_outcomes(errors=1)
    result.stdout.fnmatch_lines(["*skipped whole under CI*could not import 'serveplane_no_such_module'*"])
