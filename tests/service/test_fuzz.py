"""Schema-driven fuzzing of the service's OpenAPI description (schemathesis) against a real
server process: every route, valid keys, a bounded and seeded run, no answer >= 500, and
every answer as described (its status, content type, headers and body schema).

The deployment-name path parameter is pinned to a real deployment or an unknown one, so the
fuzzer reaches the routes' bodies instead of stopping at 404; everything else (bodies, query
parameters, version names) is generated from the description.
"""

from __future__ import annotations

import contextlib
import json
from typing import Any

import httpx
import pytest
import schemathesis
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis import strategies as st
from hypothesis.errors import Unsatisfiable
from schemathesis.checks import (
    content_type_conformance,
    not_a_server_error,
    response_headers_conformance,
    response_schema_conformance,
    status_code_conformance,
)
from schemathesis.generation import GenerationMode

from tests.service.conftest import ADMIN_KEY, CLIENT_KEY, Server, write_config
from tests.service.models import FEATURES as FEATURE_NAMES

DEPLOYMENTS = """
[deployments.main]
policy = "thompson"
policy_params = { seed = 1 }
features = FEATURES
shadow = { mode = "all" }
release = { mode = "dark" }  # registered versions start dark: promote has something to do
[[deployments.main.versions]]
name = "good"
artifact = "ARTIFACTS/good.skops"
[[deployments.main.versions]]
name = "bad"
artifact = "ARTIFACTS/bad.skops"
"""
MAX_EXAMPLES = 120  # per operation and mode: 16 operations, conformance checked on each
CHECKS = [not_a_server_error, status_code_conformance, content_type_conformance,
          response_headers_conformance, response_schema_conformance]


@pytest.fixture(scope="module")
def fuzzed_server(tmp_path_factory, artifacts):
    folder = tmp_path_factory.mktemp("fuzz")
    config = write_config(folder, artifacts, DEPLOYMENTS.replace("ARTIFACTS", str(artifacts)),
                          extra="max_batch = 20\nmax_body_bytes = 65536")
    server = Server(config).start()
    yield server
    server.stop()


@pytest.fixture(scope="module")
def api_schema(fuzzed_server):
    description = httpx.get(f"{fuzzed_server.url}/openapi.json", timeout=30).json()
    assert description["paths"], "the service describes no routes"
    for item in description["paths"].values():
        for operation in item.values():
            for parameter in operation.get("parameters", []) if isinstance(operation,
                                                                           dict) else []:
                if parameter.get("in") == "path" and parameter["name"] in ("name",
                                                                           "deployment"):
                    parameter["schema"] = {"type": "string", "enum": ["main", "nope"]}
    return schemathesis.openapi.from_dict(description)


def fuzz_operation(operation, mode: GenerationMode, url: str, failures: list[str]) -> None:
    """A seeded hypothesis run over one operation; each answer >= 500, or not as described,
    is recorded."""
    key = ADMIN_KEY if "/versions" in operation.path or "/decisions" in operation.path \
        else CLIENT_KEY

    @given(case=operation.as_strategy(generation_mode=mode))
    @settings(max_examples=MAX_EXAMPLES, deadline=None, derandomize=True, database=None,
              suppress_health_check=list(HealthCheck),
              phases=[Phase.explicit, Phase.generate])
    def fuzz(case) -> None:
        response = case.call(base_url=url, timeout=30, headers={"Authorization": f"Bearer {key}"})
        try:
            case.validate_response(response, checks=CHECKS)
        except (Exception, BaseExceptionGroup) as error:  # schemathesis raises a group
            failures.append(f"{case.method} {case.formatted_path} query={case.query} "
                            f"body={str(case.body)[:200]} -> {response.status_code} "
                            f"{response.text[:200]}: {str(error)[:300]}")
            raise AssertionError(failures[-1]) from None

    try:
        fuzz()
    except Unsatisfiable:  # nothing to make invalid (a route without parameters or body)
        assert mode is GenerationMode.NEGATIVE, operation.label
    except Exception as error:  # recorded above unless it is not an answer's fault
        if not failures or operation.path not in failures[-1]:
            failures.append(f"{operation.label} ({mode}): {type(error).__name__}: "
                            f"{error}"[:400])


@pytest.mark.parametrize("mode", [GenerationMode.POSITIVE, GenerationMode.NEGATIVE])
def test_no_route_answers_a_server_error(fuzzed_server, api_schema, mode):
    """Every operation in turn, with data that fits the description and data that does not
    (schemathesis' own pytest plugin does not load under pytest 9, so this drives it)."""
    failures: list[str] = []
    operations = [result.ok() for result in api_schema.get_all_operations()]
    assert len(operations) >= 13, [op.label for op in operations]  # every route, promote too
    for operation in operations:
        fuzz_operation(operation, mode, fuzzed_server.url, failures)
    assert not failures, "server errors or answers not as described:\n" + "\n".join(failures)


# JSON values a hostile client sends: huge integers, NaN and infinities (as the tokens
# Python's json writes), NUL and non-ASCII text, long strings, nesting.
SCALARS = st.one_of(
    st.none(), st.booleans(),
    st.integers(min_value=-10**400, max_value=10**400),
    st.sampled_from([10**400, -(10**400), 2**63, -(2**63) - 1, 2**64, 10**20]),
    st.floats(allow_nan=True, allow_infinity=True),
    st.text(alphabet=st.characters(codec="utf-8"), max_size=30),
    st.sampled_from(["\u0000", "x\u0000y", "é" * 100, "y" * 5000, "0", "1", "NaN"]),
)
NUMBERS = st.one_of(st.sampled_from([10**400, -(10**400), 2**63, 2**64, 1e308, -0.0]),
                    st.floats(allow_nan=True, allow_infinity=True),
                    st.integers(min_value=-10**400, max_value=10**400))
VALUES = st.recursive(SCALARS, lambda inner: st.one_of(
    st.lists(inner, max_size=4), st.dictionaries(st.text(max_size=8), inner, max_size=4)),
    max_leaves=12)
VALID_FEATURES = st.fixed_dictionaries({name: st.floats(-5, 5) for name in FEATURE_NAMES})
# Mostly one hostile value among valid ones (so it reaches the deepest check), sometimes an
# extra key, sometimes anything at all.
FEATURES_ = st.one_of(
    st.builds(lambda base, name, value: {**base, name: value}, VALID_FEATURES,
              st.sampled_from([*FEATURE_NAMES, "x\u00009", "extra", "é"]),
              st.one_of(NUMBERS, SCALARS, VALUES)),
    st.dictionaries(st.text(max_size=8), VALUES, max_size=6))
BODIES = {
    "predict": st.one_of(st.fixed_dictionaries({"features": FEATURES_}),
                         st.fixed_dictionaries({"instances": st.lists(FEATURES_, max_size=25)}),
                         VALUES),
    "feedback": st.one_of(
        st.fixed_dictionaries({"decision_id": st.text(max_size=80),
                               "label": st.one_of(NUMBERS, SCALARS, VALUES)}),
        st.fixed_dictionaries({"decision_id": VALUES, "label": st.integers(0, 1)}),
        st.lists(st.fixed_dictionaries({"decision_id": st.text(max_size=40), "label": VALUES}),
                 max_size=25),
        VALUES),
    "versions": st.one_of(
        st.fixed_dictionaries({"name": st.one_of(st.text(max_size=40), VALUES),
                               "artifact": st.one_of(st.sampled_from(
                                   ["good.skops", "junk.skops", "../x", "/etc/passwd",
                                    "a\u0000b", "exploding.joblib"]), st.text(max_size=40)),
                               "validation_score": st.one_of(NUMBERS, VALUES)}),
        VALUES),
}


@pytest.mark.parametrize("route", sorted(BODIES))
def test_hostile_json_bodies_never_get_a_server_error(fuzzed_server, route):
    """Property-based: whatever JSON arrives, the answer is not a 5xx and holds no traceback."""
    key = ADMIN_KEY if route == "versions" else CLIENT_KEY
    url = f"{fuzzed_server.url}/v1/deployments/main/{route}"
    seen: list[str] = []

    @given(body=BODIES[route])
    @settings(max_examples=150, deadline=None, derandomize=True, database=None,
              suppress_health_check=list(HealthCheck), phases=[Phase.generate])
    def fuzz(body: Any) -> None:
        text = json.dumps(body)  # NaN and infinities become the NaN / Infinity tokens
        response = httpx.post(url, content=text, timeout=30, headers={
            "Authorization": f"Bearer {key}", "Content-Type": "application/json"})
        if response.status_code >= 500 or "Traceback" in response.text:
            seen.append(f"{text[:300]} -> {response.status_code} {response.text[:200]}")
        assert response.status_code < 500, seen[-1]

    with contextlib.suppress(AssertionError):
        fuzz()
    assert not seen, "server errors:\n" + "\n".join(seen[:5])


BIG = st.sampled_from([2**63 - 1, 2**63, 2**64, -(2**63) - 1, 10**30])


@given(since=st.one_of(st.integers(min_value=-2**70, max_value=2**70), BIG),
       limit=st.one_of(st.integers(min_value=-2, max_value=1100), BIG))
@settings(max_examples=100, deadline=None, derandomize=True, database=None,
          suppress_health_check=list(HealthCheck), phases=[Phase.generate])
def test_events_query_never_gets_a_server_error(fuzzed_server, since, limit):
    response = httpx.get(f"{fuzzed_server.url}/v1/deployments/main/events", timeout=30,
                         params={"since": since, "limit": limit},
                         headers={"Authorization": f"Bearer {CLIENT_KEY}"})
    assert response.status_code < 500, (since, limit, response.text[:200])
