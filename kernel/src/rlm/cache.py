"""Memoization of LLM calls: a response cache answers a request it has seen before.

Evaluations and re-runs send the same requests again; with ``[rlm] cache =
"<name>"`` (a cache registered through ``rlm_register_caches``, such as
``sqlite`` from rlm-cache-sqlite) an identical request is answered from the
cache instead of the provider.  Off by default.

- :class:`ResponseCache` is what a cache plugin's factory returns.
- :func:`request_key` names a request: a sha256 of the canonical JSON of
  everything that decides the answer (not the timeout).
- :func:`response_to_json` / :func:`response_from_json` are the one
  (de)serialisation of an :class:`rlm.backend.LLMResponse` every cache uses;
  what does not read back as a valid response is an error, which a cache
  treats as a miss.
- :func:`cached_call` is the one place the LLM call path consults the cache.
  A failure of the cache itself (a corrupt entry, a full disk, a locked
  database, a bug in the plugin) never fails the LLM call: it is logged as a
  ``cache_failed`` warning and the call goes on uncached.
- :func:`open_cache` makes the configured cache (None when caching is off).
"""

from __future__ import annotations

import base64
import hashlib
import json
import math
from collections.abc import Awaitable, Callable, Mapping
from typing import TYPE_CHECKING, Any, Protocol, runtime_checkable

import attrs
from attrs import define

from rlm.logging import get_logger

if TYPE_CHECKING:
    from rlm.backend import LLMRequest, LLMResponse
    from rlm.config import RLMConfig
    from rlm.plugins import RLMPluginManager
    from rlm.types import Message

log = get_logger(__name__)

#: Part of every key: bumping it when the canonical form changes makes old entries unreachable, never wrong.
KEY_VERSION = 1
#: The ``v`` of a serialised response; entries of another version are misses.
FORMAT_VERSION = 1


@define(frozen=True, kw_only=True)
class CacheStats:
    """What a cache holds: ``entries`` responses in ``bytes`` bytes at ``location`` (a path or URL).

    ``hits`` and ``misses`` are None when the cache does not count them.
    """

    entries: int
    bytes: int
    location: str
    hits: int | None = None
    misses: int | None = None


@runtime_checkable
class ResponseCache(Protocol):
    """A store of LLM responses by request key (:func:`request_key`).

    ``get`` and ``put`` are called on the event loop: blocking work (files,
    databases) belongs in a thread (``asyncio.to_thread``).  They may raise:
    :func:`cached_call` turns any exception into a logged warning and an
    uncached call.  ``get`` returns None for a key it does not hold *and* for
    an entry that does not read back as a valid response
    (:func:`response_from_json` raises).  ``stats``, ``clear`` (returns how
    many entries it removed) and ``close`` (idempotent) are synchronous; they
    serve ``rlm cache`` and the end of a run.
    """

    async def get(self, key: str) -> LLMResponse | None:
        """The response stored under ``key``, or None."""
        ...

    async def put(self, key: str, response: LLMResponse) -> None:
        """Store ``response`` under ``key`` (replacing what was there)."""
        ...

    def stats(self) -> CacheStats:
        """Entries, size and location (and hits/misses when counted)."""
        ...

    def clear(self) -> int:
        """Remove every entry; return how many there were."""
        ...

    def close(self) -> None:
        """Release files and connections.  Idempotent."""
        ...


# --- the key ------------------------------------------------------------------------------------


def _plain(value: Any) -> Any:
    """``value`` as plain JSON data: mappings with str keys, lists, bytes as base64; else TypeError."""
    if value is None or isinstance(value, (str, bool, int)):
        return value
    if isinstance(value, float):
        if not math.isfinite(value):
            raise TypeError(f"{value!r} has no JSON form")
        return value
    if isinstance(value, Mapping):
        out = {}
        for k, v in value.items():
            if not isinstance(k, str):
                raise TypeError(f"a mapping key {k!r} is not a string")
            out[k] = _plain(v)
        return out
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    if isinstance(value, (bytes, bytearray)):
        return {"$bytes": base64.b64encode(bytes(value)).decode("ascii")}
    if attrs.has(type(value)):
        return {"$type": type(value).__name__, **{f.name: _plain(getattr(value, f.name))
                                                   for f in attrs.fields(type(value))}}
    raise TypeError(f"a {type(value).__name__} has no JSON form")


def _number(value: Any) -> float | None:
    """Sampling numbers as floats, so that ``temperature=1`` and ``1.0`` are one key."""
    return None if value is None else _plain(float(value))


def _part(part: Any) -> dict[str, Any]:
    kind = getattr(part, "type", None)
    if kind == "text":
        return {"type": "text", "text": part.text}
    if kind == "image":
        return {"type": "image", "url": part.url, "data": _plain(part.data), "media_type": part.media_type}
    if kind == "audio":
        return {"type": "audio", "data": _plain(part.data), "format": part.format}
    raise TypeError(f"a content part of type {kind!r} has no canonical form")


def _message(message: Message) -> dict[str, Any]:
    content = message.content
    return {
        "role": message.role,
        "content": content if isinstance(content, str) else [_part(p) for p in content],
        "tool_calls": [{"id": c.id, "name": c.name, "arguments": _plain(c.arguments)} for c in message.tool_calls],
        "tool_call_id": message.tool_call_id,
        "name": message.name,
    }


#: Fields of an LLMRequest that do not decide the answer (the timeout bounds the wait only).
NOT_IN_KEY = frozenset({"timeout"})
#: The fields the key has always had; any other field of LLMRequest counts only when it is not at its
#: default, so that a field added to LLMRequest later changes no existing key.
_KEY_FIELDS = ("model", "messages", "tools", "tool_choice", "response_format", "temperature", "top_p", "seed",
               "max_tokens")


def canonical_request(request: LLMRequest, *, scope: str = "") -> dict[str, Any]:
    """The parts of ``request`` that decide the answer, as plain JSON data (what :func:`request_key` hashes).

    Every field but the timeout (:data:`NOT_IN_KEY`): model, messages (role,
    content or content parts, tool calls, tool_call_id, name), tools,
    tool_choice, response_format, temperature, top_p, seed, max_tokens, and
    any field LLMRequest gains later when it is set to other than its
    default.  ``scope`` is what else decides the answer and the request does
    not carry (see :func:`request_key`).  Raises TypeError for a value with
    no JSON form (a set in tool arguments, nan).
    """
    out: dict[str, Any] = {
        "v": KEY_VERSION,
        "scope": scope,
        "model": request.model,
        "messages": [_message(m) for m in request.messages],
        "tools": [{"name": t.name, "description": t.description, "parameters": _plain(t.parameters)}
                  for t in request.tools],
        "tool_choice": request.tool_choice,
        "response_format": _plain(request.response_format),
        "temperature": _number(request.temperature),
        "top_p": _number(getattr(request, "top_p", None)),
        "seed": request.seed,
        "max_tokens": request.max_tokens,
    }
    if attrs.has(type(request)):
        for f in attrs.fields(type(request)):
            if f.name in NOT_IN_KEY or f.name in _KEY_FIELDS:
                continue
            value = getattr(request, f.name)
            default = f.default.factory() if isinstance(f.default, attrs.Factory) else f.default  # type: ignore[misc]
            if value != default:
                out["+" + f.name] = _plain(value)
    return out


def request_key(request: LLMRequest, *, scope: str = "") -> str:
    """The cache key of ``request``: hex sha256 of its canonical JSON (sorted keys, no spaces).

    Equal for requests that differ only in their timeout or in the order of
    the keys of their mappings (tool arguments, JSON Schemas); different when
    anything else that is sent differs.  ``scope`` names what decides the
    answer besides the request: the caller passes which backend and server
    answer it (e.g. ``"openai|https://api.openai.com/v1"``), so that one
    model name served by two backends (a local stand-in, another
    ``api_base``) never shares entries.  Raises TypeError for a request with
    a value that has no JSON form.
    """
    text = json.dumps(canonical_request(request, scope=scope), sort_keys=True, separators=(",", ":"), ensure_ascii=False,
                      allow_nan=False)
    return hashlib.sha256(text.encode("utf-8", "surrogatepass")).hexdigest()


# --- (de)serialisation ---------------------------------------------------------------------------


class CacheEntryError(ValueError):
    """A stored entry does not read back as a response (corrupt, truncated, another format)."""


def response_to_dict(response: LLMResponse) -> dict[str, Any]:
    """``response`` as plain JSON data (the form stored by every cache)."""
    message = response.message
    if not isinstance(message.content, str):
        content: Any = [_part(p) for p in message.content]
    else:
        content = message.content
    usage = response.usage
    return {
        "v": FORMAT_VERSION,
        "message": {
            "role": message.role,
            "content": content,
            "tool_calls": [{"id": c.id, "name": c.name, "arguments": _plain(c.arguments)}
                           for c in message.tool_calls],
            "tool_call_id": message.tool_call_id,
            "name": message.name,
        },
        "usage": {"input_tokens": usage.input_tokens, "output_tokens": usage.output_tokens,
                  "cost_usd": usage.cost_usd},
        "finish_reason": response.finish_reason,
        "model": response.model,
    }


def response_to_json(response: LLMResponse) -> bytes:
    """``response`` as UTF-8 JSON bytes; TypeError when part of it has no JSON form."""
    return json.dumps(response_to_dict(response), separators=(",", ":"), ensure_ascii=False,
                      allow_nan=False).encode("utf-8", "surrogatepass")


def _need(data: Any, key: str, types: Any, *, optional: bool = False) -> Any:
    if not isinstance(data, dict) or key not in data:
        raise CacheEntryError(f"missing {key!r}")
    value = data[key]
    if value is None and optional:
        return None
    if isinstance(value, bool) and bool not in (types if isinstance(types, tuple) else (types,)):
        raise CacheEntryError(f"{key!r} is a bool")
    if not isinstance(value, types):
        raise CacheEntryError(f"{key!r} is a {type(value).__name__}")
    return value


def _unplain(value: Any) -> Any:
    if isinstance(value, dict):
        if set(value) == {"$bytes"} and isinstance(value["$bytes"], str):
            return base64.b64decode(value["$bytes"], validate=True)
        return {k: _unplain(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_unplain(v) for v in value]
    return value


def _part_from(data: Any) -> Any:
    from rlm.types import AudioPart, ImagePart, TextPart

    kind = _need(data, "type", str)
    if kind == "text":
        return TextPart(text=_need(data, "text", str))
    if kind == "image":
        raw = _need(data, "data", dict, optional=True)
        image = None if raw is None else _unplain(raw)
        if image is not None and not isinstance(image, bytes):
            raise CacheEntryError("image data is not bytes")
        return ImagePart(url=_need(data, "url", str, optional=True), data=image,
                         media_type=_need(data, "media_type", str))
    if kind == "audio":
        audio = _unplain(_need(data, "data", dict))
        if not isinstance(audio, bytes):
            raise CacheEntryError("audio data is not bytes")
        return AudioPart(data=audio, format=_need(data, "format", str))
    raise CacheEntryError(f"unknown content part {kind!r}")


def response_from_dict(data: Any) -> LLMResponse:
    """The response :func:`response_to_dict` made; :class:`CacheEntryError` for anything else."""
    from rlm.backend import LLMResponse
    from rlm.types import Message, ToolCall, Usage

    try:
        if _need(data, "v", int) != FORMAT_VERSION:
            raise CacheEntryError(f"format version {data['v']!r}, not {FORMAT_VERSION}")
        m = _need(data, "message", dict)
        role = _need(m, "role", str)
        if role not in ("system", "user", "assistant", "tool"):
            raise CacheEntryError(f"unknown role {role!r}")
        raw_content = _need(m, "content", (str, list))
        content = raw_content if isinstance(raw_content, str) else tuple(_part_from(p) for p in raw_content)
        calls = tuple(ToolCall(id=_need(c, "id", str), name=_need(c, "name", str),
                               arguments=_need(c, "arguments", dict))
                      for c in _need(m, "tool_calls", list))
        message = Message(role=role, content=content, tool_calls=calls,
                          tool_call_id=_need(m, "tool_call_id", str, optional=True),
                          name=_need(m, "name", str, optional=True))
        u = _need(data, "usage", dict)
        cost = _need(u, "cost_usd", (int, float), optional=True)
        usage = Usage(input_tokens=_need(u, "input_tokens", int), output_tokens=_need(u, "output_tokens", int),
                      cost_usd=None if cost is None else float(cost))
        return LLMResponse(message=message, usage=usage,
                           finish_reason=_need(data, "finish_reason", str, optional=True),
                           model=_need(data, "model", str))
    except CacheEntryError:
        raise
    except (TypeError, ValueError, AttributeError, KeyError) as exc:  # attrs converters, base64
        raise CacheEntryError(f"{type(exc).__name__}: {exc}") from exc


def response_from_json(raw: bytes | str) -> LLMResponse:
    """The response :func:`response_to_json` wrote; :class:`CacheEntryError` for anything else."""
    try:
        data = json.loads(raw)
    except (ValueError, TypeError) as exc:  # JSONDecodeError and UnicodeDecodeError are ValueErrors
        raise CacheEntryError(f"not JSON: {exc}") from exc
    return response_from_dict(data)


# --- the call path ---------------------------------------------------------------------------------


def _failed(cache: Any, operation: str, exc: BaseException, **fields: Any) -> None:
    log.warning("cache_failed", operation=operation, cache=type(cache).__name__,
                error=f"{type(exc).__name__}: {exc}"[:500], action="calling the model uncached", **fields)


async def cached_call(
    cache: ResponseCache | None,
    request: LLMRequest,
    send: Callable[[LLMRequest], Awaitable[LLMResponse]],
    *,
    scope: str = "",
) -> tuple[LLMResponse, bool]:
    """Answer ``request`` from ``cache``, or await ``send(request)`` and store its response.

    Returns ``(response, hit)``: ``hit`` is True when the response came from
    the cache (no provider call was made, nothing was spent).  With ``cache``
    None it is ``(await send(request), False)``.  ``scope`` is passed to
    :func:`request_key` (which backend and server answer).  An exception of ``send`` is
    raised as is and nothing is stored; an exception of the cache (computing
    the key, ``get``, ``put``, a ``get`` that returns something other than a
    response) is logged as a ``cache_failed`` warning and never fails the call.
    Cancellation is never swallowed.
    """
    if cache is None:
        return await send(request), False
    from rlm.backend import LLMResponse

    try:
        key = request_key(request, scope=scope)
    except Exception as exc:  # noqa: BLE001 - an odd request is sent uncached
        _failed(cache, "key", exc)
        return await send(request), False
    try:
        found = await cache.get(key)
    except Exception as exc:  # noqa: BLE001 - a broken cache must not fail the call
        _failed(cache, "get", exc, key=key[:16])
        found = None
    if found is not None:
        if isinstance(found, LLMResponse):
            return found, True
        _failed(cache, "get", TypeError(f"returned a {type(found).__name__}, not an LLMResponse"), key=key[:16])
    response = await send(request)
    try:
        await cache.put(key, response)
    except Exception as exc:  # noqa: BLE001 - the answer is there; only its memo is lost
        _failed(cache, "put", exc, key=key[:16])
    return response, False


# --- opening the configured cache ------------------------------------------------------------------


def configured_name(config: RLMConfig) -> str | None:
    """The cache ``[rlm] cache`` names; None when it is unset or blank (caching off)."""
    name = getattr(config, "cache", None)
    if name is None or not str(name).strip():
        return None
    return str(name).strip()


def open_cache(pm: RLMPluginManager, config: RLMConfig) -> ResponseCache | None:
    """Make the cache ``[rlm] cache`` names with ``factory(config=config)``; None when caching is off.

    A name no installed plugin registers is a :class:`rlm.errors.ConfigError`
    naming the installed caches; a factory that fails (other than with an
    :class:`rlm.errors.RLMError` of its own) or returns something that is not
    a :class:`ResponseCache` is a :class:`rlm.errors.PluginError` naming the plugin.
    """
    from rlm.errors import ConfigError, PluginError
    from rlm.registry import collect

    name = configured_name(config)
    if name is None:
        return None
    found = collect(pm, "cache")
    reg = found.get(name)
    if reg is None:
        installed = ", ".join(sorted(found)) or "none"
        raise ConfigError(f"[rlm] cache {name!r}: no installed plugin registers this cache (installed: {installed})",
                          fix="install one (pip install rlm-cache-sqlite for \"sqlite\"), "
                              "or leave [rlm] cache unset for no caching")
    cache = reg.make(config=config, fix="check its [plugins.*] settings, or leave [rlm] cache unset")
    if not isinstance(cache, ResponseCache):
        raise PluginError(f"cache {name!r} from plugin {reg.plugin!r} made a {type(cache).__name__}, "
                          "not a ResponseCache (get, put, stats, clear, close)",
                          fix=f"report it to the authors of plugin {reg.plugin!r}")
    return cache
