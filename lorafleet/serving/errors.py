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

    def __init__(self, version: str, reason: str) -> None:
        super().__init__(f"adapter {version} could not be loaded: {reason}", code="adapter_load_failed",
                         headers={"Retry-After": "5"})


def error_body(message: str, error_type: str, param: str | None = None, code: str | None = None) -> dict:
    return {"error": {"message": message, "type": error_type, "param": param, "code": code}}
