"""The data plane's exceptions. HTTP-facing ones carry a status code and render as
OpenAI's error shape ``{"error": {"message", "type", "param", "code"}}`` in one handler.
"""

from __future__ import annotations

from lorafleet.core.errors import LorafleetError

__all__ = [
    "ServingError",
    "BadRequest",
    "ModelNotFound",
    "EngineUnavailable",
    "UpstreamTimeout",
    "AdapterLoadFailed",
    "AdapterCorrupted",
    "AdminOnly",
    "PayloadTooLarge",
    "UpstreamInvalid",
    "StreamTooLarge",
    "SchemaRejected",
    "InternalError",
    "error_body",
]


class ServingError(LorafleetError):
    """Root of every serving error."""

    status_code: int = 500
    error_type: str = "server_error"

    def __init__(self, message: str, *, param: str | None = None, code: str | None = None,
                 headers: dict[str, str] | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.param = param
        self.code = code
        self.headers = headers or {}


class BadRequest(ServingError):
    status_code = 400
    error_type = "invalid_request_error"


class ModelNotFound(ServingError):
    status_code = 404
    error_type = "invalid_request_error"

    def __init__(self, model: object) -> None:
        super().__init__(f"The model `{model}` does not exist.", param="model", code="model_not_found")


class EngineUnavailable(ServingError):
    status_code = 503
    error_type = "service_unavailable"

    def __init__(self, message: str, retry_after_s: int = 2) -> None:
        super().__init__(message, code="engine_unavailable", headers={"Retry-After": str(retry_after_s)})


class UpstreamTimeout(ServingError):
    status_code = 504
    error_type = "timeout"

    def __init__(self, message: str) -> None:
        super().__init__(message, code="upstream_timeout")


class AdapterLoadFailed(ServingError):
    """The engine refused an adapter version, or it failed its integrity/compatibility check."""

    status_code = 503
    error_type = "service_unavailable"

    def __init__(self, version: str, reason: str, permanent: bool = False) -> None:
        super().__init__(f"adapter {version} could not be loaded: {reason}", code="adapter_load_failed",
                         headers={"Retry-After": "5"})
        self.version, self.reason, self.permanent = version, reason, permanent

    def final(self) -> ServingError:
        """What the client gets: this 503, or :class:`AdapterCorrupted` when retrying cannot help
        (the files failed their integrity or compatibility check, or the engine refused them)."""
        return AdapterCorrupted(self.version, self.reason) if self.permanent else self


class AdapterCorrupted(ServingError):
    """A version whose stored files fail their integrity or compatibility check: retrying
    cannot help, so no Retry-After, and ``x-should-retry: false`` (the OpenAI SDKs' own signal)
    stops clients from retrying a 5xx."""

    status_code = 500
    error_type = "server_error"

    def __init__(self, version: str, reason: str) -> None:
        super().__init__(f"adapter {version} cannot be served: {reason}", code="adapter_corrupted",
                         headers={"x-should-retry": "false"})


class AdminOnly(ServingError):
    status_code = 403
    error_type = "permission_error"

    def __init__(self, what: str = "This endpoint") -> None:
        super().__init__(f"{what} needs an admin key (or, with no keys file, a caller on loopback).",
                         code="admin_required")


class PayloadTooLarge(ServingError):
    status_code = 413
    error_type = "invalid_request_error"

    def __init__(self, max_body_bytes: int) -> None:
        super().__init__(f"The request body is larger than {max_body_bytes} bytes (max_body_bytes).",
                         code="body_too_large")


class UpstreamInvalid(ServingError):
    """The engine answered something that is not what it should be (e.g. a body that is not JSON)."""

    status_code = 502
    error_type = "server_error"

    def __init__(self, message: str) -> None:
        super().__init__(message, code="upstream_invalid")


class StreamTooLarge(ServingError):
    """Reject mode holds a stream until its output is validated; this one outgrew the bound."""

    status_code = 502
    error_type = "server_error"

    def __init__(self, max_bytes: int) -> None:
        super().__init__(f"The streamed answer outgrew the {max_bytes} bytes a validated (reject mode) stream may "
                         "hold (reject_stream_max_bytes); ask for fewer tokens or stream=false.",
                         code="stream_too_large", headers={"x-should-retry": "false"})


class SchemaRejected(ServingError):
    status_code = 422
    error_type = "invalid_response_error"

    def __init__(self, route: str, reason: str, detail: str) -> None:
        super().__init__(f"The model's output for {route} failed its schema ({reason}): {detail}",
                         code=reason)


class InternalError(ServingError):
    """A failure the gateway did not foresee, still in OpenAI's error shape."""

    def __init__(self, exc: BaseException) -> None:
        super().__init__(f"The gateway failed: {type(exc).__name__}: {str(exc)[:300]}", code="internal_error")


def error_body(message: str, error_type: str, param: str | None = None, code: str | None = None) -> dict:
    return {"error": {"message": message, "type": error_type, "param": param, "code": code}}
