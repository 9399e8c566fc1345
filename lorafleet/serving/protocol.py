"""The request bodies the gateway accepts: one pydantic model per endpoint (chat completions,
completions, responses), the single source for validation and for the published OpenAPI
document.

They accept what vLLM accepts for a text model: system, developer, user, assistant, tool and
function messages, string or text-part content, tools and tool_choice, response_format,
stream_options, logprobs/top_logprobs, n, seed, and vLLM's own sampling extras. A field of a
known name with a wrong value is refused with a 400 naming it (``param``, e.g.
``messages[0].role``); fields the models do not name pass through to vLLM, which ignores
what it does not know (the SDKs' ``extra_body``).

Parsing stays cheap (it runs on every request): the body is parsed once with ``json.loads``
and checked with a prebuilt ``TypeAdapter`` in strict mode; the gateway forwards the dict,
not a re-serialised model.
"""

from __future__ import annotations

import json
from typing import Annotated, Any, Literal

from pydantic import (
    BaseModel,
    ConfigDict,
    Discriminator,
    Field,
    Tag,
    TypeAdapter,
    ValidationError,
)

from lorafleet.serving.errors import BadRequest

__all__ = ["ChatRequest", "CompletionRequest", "ResponsesRequest", "Kind", "KINDS", "parse_request", "read_limited",
           "openapi_schemas", "ROLES"]

Kind = Literal["chat", "completion", "responses"]
ROLES = ("system", "developer", "user", "assistant", "tool", "function")


class _Model(BaseModel):
    model_config = ConfigDict(strict=True, extra="allow")


class _Closed(BaseModel):
    model_config = ConfigDict(strict=True, extra="forbid")


NonEmpty = Annotated[str, Field(min_length=1)]
Temperature = Annotated[float, Field(ge=0, le=2)]
TopP = Annotated[float, Field(gt=0, le=1)]
Penalty = Annotated[float, Field(ge=-2, le=2)]
Seed = Annotated[int, Field(ge=-(2**63), le=2**63 - 1)]
Stop = str | Annotated[list[str], Field(max_length=64)]


class TextPart(_Closed):
    type: Literal["text"] = Field(description="A text part.")
    text: str = Field(description="The text.")


Content = str | Annotated[list[TextPart], Field(min_length=1)]


class FunctionCall(_Closed):
    name: NonEmpty = Field(description="The function's name.")
    arguments: str = Field(description="Its arguments, as JSON text.")


class ToolCall(_Closed):
    id: NonEmpty = Field(description="The call's id, answered by a tool message.")
    type: Literal["function"] = Field(description="Always function.")
    function: FunctionCall = Field(description="The function called.")


class SystemMessage(_Closed):
    role: Literal["system"] = Field(description="Instructions from the operator.")
    content: Content = Field(description="Text or text parts.")
    name: str | None = Field(default=None, description="An optional participant name.")


class DeveloperMessage(_Closed):
    role: Literal["developer"] = Field(description="Instructions from the developer (newer name of system).")
    content: Content = Field(description="Text or text parts.")
    name: str | None = Field(default=None, description="An optional participant name.")


class UserMessage(_Closed):
    role: Literal["user"] = Field(description="The user's turn.")
    content: Content = Field(description="Text or text parts.")
    name: str | None = Field(default=None, description="An optional participant name.")


class AssistantMessage(_Closed):
    role: Literal["assistant"] = Field(description="An earlier answer of the model.")
    content: Content | None = Field(default=None, description="Text or text parts (None with tool calls).")
    name: str | None = Field(default=None, description="An optional participant name.")
    tool_calls: list[ToolCall] | None = Field(default=None, description="Tools the model called.")
    refusal: str | None = Field(default=None, description="A refusal message.")
    reasoning: str | None = Field(default=None, description="Reasoning text (vLLM).")


class ToolMessage(_Closed):
    role: Literal["tool"] = Field(description="A tool's result.")
    content: Content = Field(description="The result, text or text parts.")
    tool_call_id: NonEmpty = Field(description="The call it answers.")


class FunctionMessage(_Closed):
    role: Literal["function"] = Field(description="A function's result (deprecated form of tool).")
    content: str | None = Field(description="The result.")
    name: NonEmpty = Field(description="The function's name.")


Message = Annotated[
    Annotated[SystemMessage, Tag("system")] | Annotated[DeveloperMessage, Tag("developer")]
    | Annotated[UserMessage, Tag("user")] | Annotated[AssistantMessage, Tag("assistant")]
    | Annotated[ToolMessage, Tag("tool")] | Annotated[FunctionMessage, Tag("function")],
    Discriminator("role"),
]


class FunctionDef(_Closed):
    name: Annotated[str, Field(min_length=1, max_length=64, pattern=r"^[A-Za-z0-9_-]+$")] = Field(
        description="The function's name.")
    description: str | None = Field(default=None, description="What it does.")
    parameters: dict[str, Any] | None = Field(default=None, description="Its parameters, a JSON schema.")
    strict: bool | None = Field(default=None, description="Whether calls must match the schema exactly.")


class Tool(_Closed):
    type: Literal["function"] = Field(description="Always function.")
    function: FunctionDef = Field(description="The function.")


class NamedFunction(_Closed):
    name: NonEmpty = Field(description="The function to call.")


class NamedToolChoice(_Closed):
    type: Literal["function"] = Field(description="Always function.")
    function: NamedFunction = Field(description="The function to call.")


class JsonSchemaFormat(_Closed):
    name: Annotated[str, Field(min_length=1, max_length=64)] = Field(description="The schema's name.")
    description: str | None = Field(default=None, description="What the schema is for.")
    schema_: dict[str, Any] | None = Field(default=None, alias="schema", description="A JSON schema.")
    strict: bool | None = Field(default=None, description="Whether the output must match exactly.")


class ResponseFormat(_Closed):
    type: Literal["text", "json_object", "json_schema"] = Field(description="Plain text, any JSON, or a schema.")
    json_schema: JsonSchemaFormat | None = Field(default=None, description="The schema (type json_schema).")


class StreamOptions(_Closed):
    include_usage: bool | None = Field(default=None, description="Send a last chunk with the token usage.")
    continuous_usage_stats: bool | None = Field(default=None, description="Usage in every chunk (vLLM).")


class _Sampling(_Model):
    """Sampling fields the chat and text endpoints share (OpenAI's and vLLM's)."""

    model: NonEmpty = Field(description="The route (logical model) or the base model's name.")
    max_tokens: Annotated[int, Field(ge=1)] | None = Field(default=None, description="Most tokens to generate.")
    temperature: Temperature | None = Field(default=None, description="Sampling temperature, 0-2.")
    top_p: TopP | None = Field(default=None, description="Nucleus sampling mass, (0, 1].")
    n: Annotated[int, Field(ge=1, le=16)] | None = Field(default=None, description="Choices to generate, 1-16.")
    stream: bool | None = Field(default=None, description="Stream the answer as server-sent events.")
    stream_options: StreamOptions | None = Field(default=None, description="Streaming options.")
    stop: Stop | None = Field(default=None, description="Stop sequences.")
    seed: Seed | None = Field(default=None, description="Random seed.")
    presence_penalty: Penalty | None = Field(default=None, description="-2 to 2.")
    frequency_penalty: Penalty | None = Field(default=None, description="-2 to 2.")
    logit_bias: dict[str, Annotated[float, Field(ge=-100, le=100)]] | None = Field(
        default=None, description="Token id -> bias, -100 to 100.")
    user: str | None = Field(default=None, description="End-user id; also the sticky key for canary routing.")
    top_k: Annotated[int, Field(ge=-1)] | None = Field(default=None, description="vLLM: top-k sampling (-1 off).")
    min_p: Annotated[float, Field(ge=0, le=1)] | None = Field(default=None, description="vLLM: min-p sampling.")
    repetition_penalty: Annotated[float, Field(gt=0, le=2)] | None = Field(
        default=None, description="vLLM: repetition penalty.")
    min_tokens: Annotated[int, Field(ge=0)] | None = Field(default=None, description="vLLM: fewest tokens.")
    ignore_eos: bool | None = Field(default=None, description="vLLM: keep generating past end-of-sequence.")


class ChatRequest(_Sampling):
    """POST /v1/chat/completions."""

    messages: Annotated[list[Message], Field(min_length=1)] = Field(description="The conversation so far.")
    max_completion_tokens: Annotated[int, Field(ge=1)] | None = Field(
        default=None, description="Most tokens to generate (newer name of max_tokens).")
    logprobs: bool | None = Field(default=None, description="Return log probabilities of the output tokens.")
    top_logprobs: Annotated[int, Field(ge=0, le=20)] | None = Field(
        default=None, description="Alternatives per token with logprobs, 0-20.")
    response_format: ResponseFormat | None = Field(default=None, description="Constrain the output's format.")
    tools: list[Tool] | None = Field(default=None, description="Functions the model may call.")
    tool_choice: Literal["none", "auto", "required"] | NamedToolChoice | None = Field(
        default=None, description="Whether and which tool to call.")
    parallel_tool_calls: bool | None = Field(default=None, description="Allow several tool calls at once.")


PromptTokens = Annotated[list[int], Field(min_length=1)]


class CompletionRequest(_Sampling):
    """POST /v1/completions."""

    prompt: (NonEmpty | Annotated[list[str], Field(min_length=1)] | PromptTokens
             | Annotated[list[PromptTokens], Field(min_length=1)]) = Field(
        description="Text, texts, or token ids.")
    logprobs: Annotated[int, Field(ge=0, le=20)] | None = Field(
        default=None, description="Log probabilities of the top tokens, 0-20.")
    echo: bool | None = Field(default=None, description="Echo the prompt in the answer.")
    suffix: str | None = Field(default=None, description="Text after the completion.")


class InputText(_Closed):
    type: Literal["input_text", "output_text"] = Field(description="A text part.")
    text: str = Field(description="The text.")


class InputMessage(_Closed):
    type: Literal["message"] | None = Field(default=None, description="Always message (may be left out).")
    role: Literal["user", "system", "developer", "assistant"] = Field(description="Who speaks.")
    content: str | Annotated[list[InputText], Field(min_length=1)] = Field(description="Text or text parts.")


class FunctionCallItem(_Closed):
    type: Literal["function_call"] = Field(description="A tool call the model made earlier.")
    call_id: NonEmpty = Field(description="The call's id.")
    name: NonEmpty = Field(description="The function's name.")
    arguments: str = Field(description="Its arguments, as JSON text.")


class FunctionCallOutputItem(_Closed):
    type: Literal["function_call_output"] = Field(description="A tool's result.")
    call_id: NonEmpty = Field(description="The call it answers.")
    output: str = Field(description="The result.")


def _item_kind(item: Any) -> str:
    t = item.get("type") if isinstance(item, dict) else getattr(item, "type", None)
    return t if t in ("function_call", "function_call_output") else "message"


InputItem = Annotated[
    Annotated[InputMessage, Tag("message")] | Annotated[FunctionCallItem, Tag("function_call")]
    | Annotated[FunctionCallOutputItem, Tag("function_call_output")],
    Discriminator(_item_kind),
]


class ResponsesTool(_Closed):
    type: Literal["function"] = Field(description="Always function.")
    name: Annotated[str, Field(min_length=1, max_length=64, pattern=r"^[A-Za-z0-9_-]+$")] = Field(
        description="The function's name.")
    description: str | None = Field(default=None, description="What it does.")
    parameters: dict[str, Any] | None = Field(default=None, description="Its parameters, a JSON schema.")
    strict: bool | None = Field(default=None, description="Whether calls must match the schema exactly.")


class TextFormat(_Closed):
    type: Literal["text", "json_object", "json_schema"] = Field(description="Plain text, any JSON, or a schema.")
    name: Annotated[str, Field(min_length=1, max_length=64)] | None = Field(
        default=None, description="The schema's name (json_schema).")
    schema_: dict[str, Any] | None = Field(default=None, alias="schema", description="A JSON schema (json_schema).")
    description: str | None = Field(default=None, description="What the schema is for.")
    strict: bool | None = Field(default=None, description="Whether the output must match exactly.")


class TextConfig(_Closed):
    format: TextFormat | None = Field(default=None, description="The output's format.")


class ResponsesRequest(_Model):
    """POST /v1/responses."""

    model: NonEmpty = Field(description="The route (logical model) or the base model's name.")
    input: NonEmpty | Annotated[list[InputItem], Field(min_length=1)] = Field(
        description="Text, or input items (messages, earlier tool calls and their results).")
    instructions: str | None = Field(default=None, description="A system message before the input.")
    max_output_tokens: Annotated[int, Field(ge=1)] | None = Field(default=None, description="Most tokens to generate.")
    temperature: Temperature | None = Field(default=None, description="Sampling temperature, 0-2.")
    top_p: TopP | None = Field(default=None, description="Nucleus sampling mass, (0, 1].")
    stream: bool | None = Field(default=None, description="Stream the answer as server-sent events.")
    text: TextConfig | None = Field(default=None, description="The output's format.")
    tools: list[ResponsesTool] | None = Field(default=None, description="Functions the model may call.")
    tool_choice: Literal["none", "auto", "required"] | None = Field(
        default=None, description="Whether to call a tool.")
    parallel_tool_calls: bool | None = Field(default=None, description="Allow several tool calls at once.")
    top_logprobs: Annotated[int, Field(ge=0, le=20)] | None = Field(default=None, description="0-20.")
    user: str | None = Field(default=None, description="End-user id; also the sticky key for canary routing.")
    metadata: dict[str, Annotated[str, Field(max_length=512)]] | None = Field(
        default=None, description="Up to 16 string pairs, kept with the response.", max_length=16)
    store: bool | None = Field(default=None, description="Keep the response on the engine for later reference.")
    previous_response_id: str | None = Field(default=None, description="Continue an earlier stored response.")
    truncation: Literal["auto", "disabled"] | None = Field(default=None, description="Drop old input to fit.")
    top_k: Annotated[int, Field(ge=-1)] | None = Field(default=None, description="vLLM: top-k sampling (-1 off).")


_ADAPTERS: dict[str, TypeAdapter] = {"chat": TypeAdapter(ChatRequest), "completion": TypeAdapter(CompletionRequest),
                                     "responses": TypeAdapter(ResponsesRequest)}
KINDS: dict[str, type[BaseModel]] = {"chat": ChatRequest, "completion": CompletionRequest,
                                     "responses": ResponsesRequest}


def parse_request(raw: bytes, kind: Kind) -> dict:
    """The JSON body as a dict, checked against the endpoint's model; BadRequest naming the field."""
    try:
        body = json.loads(raw)
    except (ValueError, UnicodeDecodeError):
        raise BadRequest("The request body is not valid JSON.", code="invalid_json") from None
    except RecursionError:
        raise BadRequest("The request body is nested too deeply.", code="invalid_json") from None
    if not isinstance(body, dict):
        raise BadRequest("The request body must be a JSON object.", code="invalid_body")
    try:
        _ADAPTERS[kind].validate_python(body)
    except ValidationError as err:
        # the deepest error names the field best (a union's shallow "not a string" hides the rest)
        first = max(err.errors(include_url=False, include_context=False), key=lambda e: len(e["loc"]))
        param = _param(body, first)
        raise BadRequest(f"Invalid parameter {param or '(body)'}: {first['msg']}", param=param,
                         code="invalid_parameter") from None
    except RecursionError:
        raise BadRequest("The request body is nested too deeply.", code="invalid_json") from None
    return body


def _param(body: dict, error: dict) -> str | None:
    """The field an error is about, as ``messages[0].role``: the error's location walked through
    the body itself (pydantic's location also names union members, which are not fields)."""
    out, cur = "", body
    loc = list(error["loc"])
    for i, part in enumerate(loc):
        if isinstance(cur, dict) and isinstance(part, str) and part in cur:
            out, cur = f"{out}.{part}" if out else part, cur[part]
        elif isinstance(cur, list) and isinstance(part, int) and 0 <= part < len(cur):
            out, cur = f"{out}[{part}]", cur[part]
        elif i == len(loc) - 1 and error["type"] == "missing" and isinstance(part, str):
            out = f"{out}.{part}" if out else part
    if error["type"] in ("union_tag_invalid", "union_tag_not_found") and isinstance(cur, dict):
        field = "role" if "role" in cur or out.startswith("messages") else "type"
        out = f"{out}.{field}" if out else field
    return out or None


def openapi_schemas() -> tuple[dict[str, dict], dict[str, dict]]:
    """({kind: the body schema, a $ref}, {name: component schema}) for the OpenAPI document."""
    from pydantic.json_schema import models_json_schema

    refs, top = models_json_schema([(m, "validation") for m in KINDS.values()],
                                   ref_template="#/components/schemas/{model}", by_alias=True)
    bodies = {kind: refs[(model, "validation")] for kind, model in KINDS.items()}
    return bodies, top.get("$defs", {})


async def read_limited(request, max_body_bytes: int) -> bytes:
    """The request body, refused with 413 as soon as it exceeds ``max_body_bytes``: a declared
    Content-Length over it before reading anything, a streamed (chunked) body the moment the
    bytes read pass it, so at most ``max_body_bytes`` plus one chunk is ever held."""
    from lorafleet.serving.errors import PayloadTooLarge

    declared = request.headers.get("content-length")
    if declared is not None:
        try:
            n = int(declared)
        except ValueError:
            raise BadRequest(f"Content-Length {declared[:40]!r} is not a number.", param="Content-Length",
                             code="invalid_header") from None
        if n > max_body_bytes:
            raise PayloadTooLarge(max_body_bytes)
    chunks, size = [], 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > max_body_bytes:
            raise PayloadTooLarge(max_body_bytes)
        chunks.append(chunk)
    return b"".join(chunks)
