"""The error taxonomy: every status maps to one HTTP status and one gRPC code, as TF Serving maps them."""

from __future__ import annotations

import json

import grpc
import pytest

from service import errors
from service.errors import GRPC_CODE, HTTP_STATUS, ServiceError, Status
from service.rest.app import service_error_response

EXPECTED = {
    Status.INVALID_ARGUMENT: (400, grpc.StatusCode.INVALID_ARGUMENT),
    Status.NOT_FOUND: (404, grpc.StatusCode.NOT_FOUND),
    Status.TOO_LARGE: (413, grpc.StatusCode.RESOURCE_EXHAUSTED),
    Status.RESOURCE_EXHAUSTED: (429, grpc.StatusCode.RESOURCE_EXHAUSTED),
    Status.DEADLINE_EXCEEDED: (504, grpc.StatusCode.DEADLINE_EXCEEDED),
    Status.UNAVAILABLE: (503, grpc.StatusCode.UNAVAILABLE),
    Status.FAILED_PRECONDITION: (400, grpc.StatusCode.FAILED_PRECONDITION),
    Status.CONFLICT: (409, grpc.StatusCode.ABORTED),
    Status.UNAUTHENTICATED: (401, grpc.StatusCode.UNAUTHENTICATED),
    Status.INTERNAL: (500, grpc.StatusCode.INTERNAL),
}


def test_every_status_has_both_mappings():
    assert set(HTTP_STATUS) == set(Status) == set(GRPC_CODE) == set(EXPECTED)
    for status, (http, code) in EXPECTED.items():
        assert (HTTP_STATUS[status], GRPC_CODE[status]) == (http, code), status


def _subclasses(cls: type) -> list[type]:
    return [c for sub in cls.__subclasses__() for c in (sub, *_subclasses(sub))]


@pytest.mark.parametrize("cls", [c for c in _subclasses(ServiceError) if c.__module__ == errors.__name__],
                         ids=lambda c: c.__name__)
def test_each_error_class_carries_its_codes(cls):
    exc = cls("something went wrong")
    assert isinstance(exc.status, Status)
    assert exc.http_status == HTTP_STATUS[exc.status] and exc.grpc_code == GRPC_CODE[exc.status]
    assert exc.message == str(exc) == "something went wrong"
    if cls is not errors.InternalError:
        assert exc.status is not Status.INTERNAL  # each public class means something specific


def test_client_errors_are_4xx_and_server_errors_5xx():
    assert errors.InvalidInputError("x").http_status == 400
    assert errors.NotFoundError("x").http_status == 404
    assert errors.PayloadTooLargeError("x").http_status == 413
    assert errors.OverloadedError("x").http_status == 429
    assert errors.UnavailableError("x").http_status == 503
    assert errors.DeadlineError("x").http_status == 504
    assert errors.ConflictError("x").http_status == 409
    assert ServiceError("x").http_status == 500  # the base class is an internal error


@pytest.mark.parametrize(("retry_after", "header"), [(None, None), (0.2, "1"), (2, "2"), (7.6, "8")])
def test_rest_error_body_and_retry_after(retry_after, header):
    response = service_error_response(errors.OverloadedError("queue full", retry_after=retry_after))
    assert response.status_code == 429
    assert json.loads(bytes(response.body)) == {"error": "queue full"}
    assert response.headers.get("retry-after") == header
