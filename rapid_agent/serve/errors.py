"""Errors as the OpenAI API reports them: an HTTP status and `{"error": {"message", "type", "param", "code"}}`.

Handlers raise `APIError`; the app turns it (and anything unexpected, as a bare 500 without details) into that
shape. Messages say what was wrong with the request, never echo a key or image bytes.
"""

from __future__ import annotations

from rapid_agent.backends.base import redact
from rapid_agent.serve.protocol import ErrorBody, ErrorResponse

#: the OpenAI error `type` for each status the server answers with
_TYPES = {
    400: "invalid_request_error",
    401: "authentication_error",
    404: "invalid_request_error",
    413: "invalid_request_error",
    429: "rate_limit_error",
    502: "server_error",
    503: "server_error",
    504: "timeout_error",
}


class APIError(Exception):
    """A request that ends in an error response; `headers` go with it (e.g. Retry-After on 429)."""

    def __init__(
        self,
        status: int,
        message: str,
        *,
        code: str | None = None,
        param: str | None = None,
        headers: dict[str, str] | None = None,
    ) -> None:
        super().__init__(message)
        self.status = status
        self.message = redact(message, limit=1000)
        self.code = code
        self.param = param
        self.headers = dict(headers or {})

    def body(self) -> ErrorResponse:
        kind = _TYPES.get(self.status, "server_error" if self.status >= 500 else "invalid_request_error")
        return ErrorResponse(error=ErrorBody(message=self.message, type=kind, param=self.param, code=self.code))


def bad_request(message: str, *, param: str | None = None, code: str = "invalid_request") -> APIError:
    return APIError(400, message, param=param, code=code)
