"""One error taxonomy for the service, mapped once to HTTP statuses and once to gRPC codes."""

from __future__ import annotations

import enum

import grpc


class Status(enum.Enum):
    INVALID_ARGUMENT = "invalid_argument"
    NOT_FOUND = "not_found"
    TOO_LARGE = "too_large"
    RESOURCE_EXHAUSTED = "resource_exhausted"
    DEADLINE_EXCEEDED = "deadline_exceeded"
    UNAVAILABLE = "unavailable"
    FAILED_PRECONDITION = "failed_precondition"
    CONFLICT = "conflict"
    UNAUTHENTICATED = "unauthenticated"
    INTERNAL = "internal"


# The two tables every transport uses; codes follow TF Serving's http_server.cc mapping.
HTTP_STATUS: dict[Status, int] = {
    Status.INVALID_ARGUMENT: 400,
    Status.NOT_FOUND: 404,
    Status.TOO_LARGE: 413,
    Status.RESOURCE_EXHAUSTED: 429,
    Status.DEADLINE_EXCEEDED: 504,
    Status.UNAVAILABLE: 503,
    Status.FAILED_PRECONDITION: 400,
    Status.CONFLICT: 409,
    Status.UNAUTHENTICATED: 401,
    Status.INTERNAL: 500,
}
GRPC_CODE: dict[Status, grpc.StatusCode] = {
    Status.INVALID_ARGUMENT: grpc.StatusCode.INVALID_ARGUMENT,
    Status.NOT_FOUND: grpc.StatusCode.NOT_FOUND,
    Status.TOO_LARGE: grpc.StatusCode.RESOURCE_EXHAUSTED,
    Status.RESOURCE_EXHAUSTED: grpc.StatusCode.RESOURCE_EXHAUSTED,
    Status.DEADLINE_EXCEEDED: grpc.StatusCode.DEADLINE_EXCEEDED,
    Status.UNAVAILABLE: grpc.StatusCode.UNAVAILABLE,
    Status.FAILED_PRECONDITION: grpc.StatusCode.FAILED_PRECONDITION,
    Status.CONFLICT: grpc.StatusCode.ABORTED,
    Status.UNAUTHENTICATED: grpc.StatusCode.UNAUTHENTICATED,
    Status.INTERNAL: grpc.StatusCode.INTERNAL,
}


class ServiceError(Exception):
    """Base of every error a client may see; `status` picks the HTTP status and gRPC code."""

    status: Status = Status.INTERNAL

    def __init__(self, message: str, *, retry_after: float | None = None):
        super().__init__(message)
        self.message = message
        self.retry_after = retry_after

    @property
    def http_status(self) -> int:
        return HTTP_STATUS[self.status]

    @property
    def grpc_code(self) -> grpc.StatusCode:
        return GRPC_CODE[self.status]


class InvalidInputError(ServiceError):
    status = Status.INVALID_ARGUMENT


class NotFoundError(ServiceError):
    status = Status.NOT_FOUND


class PayloadTooLargeError(ServiceError):
    status = Status.TOO_LARGE


class OverloadedError(ServiceError):
    status = Status.RESOURCE_EXHAUSTED


class DeadlineError(ServiceError):
    status = Status.DEADLINE_EXCEEDED


class UnavailableError(ServiceError):
    status = Status.UNAVAILABLE


class ConflictError(ServiceError):
    """The request clashes with the current state, e.g. a second fine-tune while one runs."""

    status = Status.CONFLICT


class InternalError(ServiceError):
    status = Status.INTERNAL
