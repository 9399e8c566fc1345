"""A schemathesis check (loaded with SCHEMATHESIS_HOOKS) for tests/integration/test_fuzz_gateway.py:
every 4xx is OpenAI's error shape, and the gateway's own refusals of a request name the field."""

from __future__ import annotations

import schemathesis

NAMED = {"invalid_parameter", "model_not_found"}  # the gateway's refusals of one field of the body


@schemathesis.check
def openai_error_names_the_field(ctx, response, case) -> None:
    if not 400 <= response.status_code < 500:
        return
    err = response.json()["error"]
    assert set(err) >= {"message", "type", "param", "code"}, f"not OpenAI's error shape: {err}"
    if err["code"] in NAMED:
        assert err["param"], f"a {response.status_code} that names no field: {err}"
