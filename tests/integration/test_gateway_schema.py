"""The gateway against its own OpenAPI document, with schemathesis.

A real ``streamcart gateway`` process and a ``streamcart worker`` process for
every shop service serve one namespace of the test server; the document is read from
``/schema/openapi.json`` and every operation in it is fuzzed with positive and
negative data, with every built-in check: the document must describe the
gateway's wire contract (contract section 5) exactly, error bodies and statuses
included.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import schemathesis
from hypothesis import HealthCheck, given, settings
from schemathesis import GenerationMode
from schemathesis.checks import (
    positive_data_acceptance,
    response_schema_conformance,
    status_code_conformance,
)
from schemathesis.errors import FailureGroup
from schemathesis.schemas import APIOperation, BaseSchema

from tests.integration.error_bodies import ErrorBodies
from tests.integration.live_shop import LiveShop, live_shop

# The HTTP contract is the same whatever server is behind the gateway (the
# cluster tier runs the shop's own tests there), so its fuzzing runs once.
pytestmark = pytest.mark.standalone
# The shop runs with a client budget far above what fuzzing spends, so no 429
# gets in the way of the answers under test.
MAX_EXAMPLES = 30
ALICE = {"email": "alice@example.com", "password": "s3cret-pass", "name": "Alice"}
BAD_BODY = {"email": 1, "password": "p", "name": "n"}


@pytest.fixture(scope="module")
def live_gateway(redis_url: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[LiveShop]:
    """The whole shop in a namespace of its own: every route has its service, so
    a 5xx is the gateway's fault."""
    with live_shop(redis_url, Path(tmp_path_factory.mktemp("schema")), concurrency=8) as shop:
        yield shop


@pytest.fixture(scope="module")
def api_schema(live_gateway: LiveShop) -> BaseSchema:
    """The OpenAPI document the gateway serves, requests going to that gateway."""
    return schemathesis.openapi.from_url(f"{live_gateway.base_url}/schema/openapi.json")


def _operation(schema: BaseSchema, method: str, path: str) -> APIOperation:
    operation: APIOperation = schema[path][method]
    return operation


def _fuzz(operation: APIOperation, mode: GenerationMode, **call: Any) -> None:
    """Send ``MAX_EXAMPLES`` generated requests to ``operation``, validating each answer."""

    @settings(
        max_examples=MAX_EXAMPLES,
        deadline=None,
        database=None,
        suppress_health_check=list(HealthCheck),
    )
    @given(case=operation.as_strategy(generation_mode=mode))
    def run(case: schemathesis.Case) -> None:
        case.call_and_validate(timeout=10, **call)

    run()


def test_every_operation_passes_every_check(
    api_schema: BaseSchema, live_gateway: LiveShop, error_bodies: ErrorBodies
) -> None:
    """Proves that, for every operation in the document and both positive and negative
    data, the gateway never answers a 5xx (``not_a_server_error``), answers the content
    types, headers, statuses and bodies it documents, accepts schema-valid data, rejects
    schema-invalid data with a 4xx (``negative_data_rejection``) and passes every other
    built-in check; none of its error bodies tells internals (checked on every one)."""
    operations = [result.ok() for result in api_schema.get_all_operations()]
    assert {op.label for op in operations} >= {
        "POST /api/users/register",
        "POST /api/users/login",
        "GET /api/me",
        "GET /healthz",
        "GET /readyz",
    }
    for operation in operations:
        # An operation without parameters or a body has no invalid data to generate.
        has_inputs = any(True for _ in operation.iter_parameters()) or bool(
            operation.get_request_payload_content_types()
        )
        modes = [GenerationMode.POSITIVE] + [GenerationMode.NEGATIVE] * has_inputs
        for mode in modes:
            try:
                _fuzz(operation, mode)
            except FailureGroup:
                print(f"{operation.label} with {mode} data failed\n{live_gateway.tails()}")
                raise
    assert len(error_bodies.seen) >= len(operations), "the error bodies were not seen"


def test_the_probes_pass_every_check(api_schema: BaseSchema) -> None:
    """Proves that ``/healthz``, ``/readyz`` and ``/metrics`` pass all checks, the known
    gaps included: their documented statuses, bodies and content types are exact."""
    for path in ("/healthz", "/readyz", "/metrics"):
        _fuzz(_operation(api_schema, "GET", path), GenerationMode.POSITIVE)


def test_a_400_body_matches_the_documented_schema(api_schema: BaseSchema) -> None:
    """Proves the documented 400 body is the one the gateway sends: the error body of
    contract section 5, not Litestar's default ``{status_code, detail, extra}``."""
    case = _operation(api_schema, "POST", "/api/users/register").Case(body=BAD_BODY)
    response = case.call(timeout=10)
    assert response.status_code == 400, response.text
    case.validate_response(response, checks=[response_schema_conformance])


def test_every_status_the_gateway_answers_is_documented(api_schema: BaseSchema) -> None:
    """Proves the document lists the statuses of everyday answers: 400 (an email the
    users service would refuse), 401 (no token, a bad token), 403 (wrong password), 409
    (email taken); and that ``/api/me`` declares the Bearer scheme it needs."""
    register = _operation(api_schema, "POST", "/api/users/register")
    login = _operation(api_schema, "POST", "/api/users/login")
    me = _operation(api_schema, "GET", "/api/me")
    cases = [
        (register.Case(body=ALICE), 201),
        (register.Case(body=ALICE), 409),
        (register.Case(body={**ALICE, "email": "not-an-email"}), 400),
        (login.Case(body={"email": ALICE["email"], "password": "wrong"}), 403),
        (me.Case(), 401),
        (me.Case(headers={"Authorization": "Bearer not.a.token"}), 401),
    ]
    for case, expected in cases:
        response = case.call(timeout=10)
        assert response.status_code == expected, response.text
        case.validate_response(
            response, checks=[status_code_conformance, response_schema_conformance]
        )
    raw = api_schema.raw_schema
    schemes = raw["components"]["securitySchemes"]
    [requirement] = raw["paths"]["/api/me"]["get"]["security"]
    [name] = requirement
    assert schemes[name]["type"] == "http" and schemes[name]["scheme"] == "bearer"


def test_the_request_bodies_are_as_strict_as_the_gateway(api_schema: BaseSchema) -> None:
    """Proves the document refuses what the gateway refuses: unknown fields
    (``additionalProperties: false``) and, for register, the users service's rules."""
    schemas = api_schema.raw_schema["components"]["schemas"]
    assert schemas["Register"]["additionalProperties"] is False
    assert schemas["Login"]["additionalProperties"] is False
    fields = schemas["Register"]["properties"]
    assert fields["email"]["maxLength"] == 254 and fields["email"]["pattern"]
    assert (fields["password"]["minLength"], fields["password"]["maxLength"]) == (8, 128)
    assert (fields["name"]["minLength"], fields["name"]["maxLength"]) == (1, 100)


def test_schema_valid_bodies_are_accepted(api_schema: BaseSchema) -> None:
    """Proves a body the document calls valid is not refused as invalid (4xx other than
    401/403/404/409/429): generated register and login bodies pass
    ``positive_data_acceptance``."""
    for path in ("/api/users/register", "/api/users/login"):
        _fuzz(
            _operation(api_schema, "POST", path),
            GenerationMode.POSITIVE,
            checks=[positive_data_acceptance],
        )
