"""The engines the gateway forwards to, and which adapter versions each has loaded.

A request goes to the healthy engine with the fewest requests in flight, except that an
engine which already has the requested version (loaded, or being loaded) is preferred
while its in-flight count is within ``affinity_slack_requests`` of the least-loaded one:
an adapter load costs far more than a short queue. A request counts as in flight from the
moment its engine is chosen, so a burst of first requests spreads instead of piling onto
the engine that was idle a moment ago.

An adapter version is loaded on an engine on demand, exactly once even when many first
requests arrive together; versions in use are leased so that, over the engine's limit,
only idle ones are unloaded: the one with the fewest of the engine's last ``USE_WINDOW`` requests,
the least recently used among equals. Plain LRU let a cold tail (Zipf traffic over many
versions: each cold version asked once) push out versions asked for every few requests; counting
recent uses keeps the hot ones resident and lets the tail churn. An engine that comes back
after being down has forgotten its adapters, so its loaded set is cleared; so has one that a
supervisor restarted on a fresh port (``replace_url``: same Engine, new URL, nothing loaded).

Who loads (``loading``): ``gateway`` materializes a verified copy itself and passes its local
path to vLLM's ``/v1/load_lora_adapter`` (one machine, one disk); ``engine`` only names the
version in a request that makes the engine's own lorafleet LoRA resolver fetch and verify it
from the registry (engines on other machines, no shared disk): on vLLM a ``/tokenize``, which
never queues behind generation (:func:`~lorafleet.serving.engine_kinds.load_request`). Unloading idle
versions is the same ``/v1/unload_lora_adapter`` in both (it needs only the name).

The engine set can change while the gateway runs (:meth:`EnginePool.set_urls`, from the routes
document's ``engines`` list): a new engine joins once its first health probe answers; a
removed one takes no new requests, and those in flight on it end by themselves.

Health: an engine whose port refuses connections is down at once (its process is gone);
one that answers slowly or wrongly is down only after ``down_after_failed_probes`` probes
in a row (default 3), since a busy engine on a saturated machine can take seconds to answer ``/health``
while it serves perfectly well, and taking the only engine out would fail every request.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections import Counter, OrderedDict, deque
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path

import httpx

from lorafleet.serving.engine_kinds import can_unload, health_path, load_request, model_name
from lorafleet.serving.errors import AdapterLoadFailed, EngineUnavailable
from lorafleet.serving.upstream import translate

__all__ = ["Engine", "EnginePool", "PathResolver", "normalize_url"]

log = logging.getLogger("lorafleet.gateway")

USE_WINDOW = 1000  # an engine's last requests for adapter versions, counted for eviction

# version (name@N) -> a verified local adapter folder; raises on integrity/compatibility errors
PathResolver = Callable[[str], Awaitable[Path]]


def normalize_url(url: str) -> str:
    """An engine's root URL as the pool keeps it: no trailing slash, no ``/v1``."""
    return url.rstrip("/").removesuffix("/v1")


class Engine:
    """One vLLM OpenAI server, by URL, and the gateway's view of it."""

    def __init__(self, root_url: str, max_loaded: int) -> None:
        self.root_url = normalize_url(root_url)
        self.generation = 0  # bumped when the URL changes: a load begun before does not count after
        self.max_loaded = max_loaded
        self.healthy = True
        self.failed_probes = 0  # in a row
        self.base_name: str | None = None
        self.inflight = 0
        self.loaded: OrderedDict[str, None] = OrderedDict()  # LRU order, oldest first
        self.recent: deque[str] = deque(maxlen=USE_WINDOW)  # the versions of its last requests
        self.uses: Counter[str] = Counter()  # ... counted
        self.loading: dict[str, int] = {}  # version -> callers waiting for its load to end
        self.in_use: dict[str, int] = {}
        self.load_locks: dict[str, asyncio.Lock] = {}
        self.loads_total = 0
        self.unloads_total = 0

    def forget_adapters(self) -> None:
        self.loaded.clear()

    def used(self, version: str) -> None:
        """Count one request for ``version`` in the window that eviction reads."""
        if len(self.recent) == self.recent.maxlen:
            oldest = self.recent[0]
            self.uses[oldest] -= 1
            if not self.uses[oldest]:
                del self.uses[oldest]
        self.recent.append(version)
        self.uses[version] += 1

    def has(self, version: str) -> bool:
        """The version is loaded here, or its load has begun (requests for it can share that)."""
        return version in self.loaded or version in self.loading

    def __repr__(self) -> str:
        return f"Engine({self.root_url}, healthy={self.healthy}, loaded={list(self.loaded)})"


class EnginePool:
    """Picks an engine per request and makes sure it has the requested version loaded."""

    def __init__(self, urls: list[str], client: httpx.AsyncClient, resolve_path: PathResolver | None,
                 max_loaded: int, affinity_slack_requests: int = 4, down_after_failed_probes: int = 3,
                 loading: str = "gateway", kind: str = "vllm", base_name: str | None = None) -> None:
        if not urls:
            raise ValueError("at least one engine URL is needed")
        if affinity_slack_requests < 0:
            raise ValueError(f"affinity_slack_requests must be >= 0, got {affinity_slack_requests}")
        if down_after_failed_probes < 1:
            raise ValueError(f"down_after_failed_probes must be >= 1, got {down_after_failed_probes}")
        self.engines = [Engine(u, max_loaded) for u in urls]
        self.max_loaded, self.loading, self.kind, self.default_base = max_loaded, loading, kind, base_name
        self.affinity_slack_requests = affinity_slack_requests
        self.down_after_failed_probes = down_after_failed_probes
        self.client = client
        self.resolve_path = resolve_path
        self.on_unload: Callable[[Engine, str], None] = lambda _engine, _version: None  # metrics hook

    # -- health ---------------------------------------------------------------------------
    async def probe(self, engine: Engine) -> bool:
        """Check ``engine`` once and update its health (see the module docstring); True if it answered."""
        refused = False
        try:
            ok = (await self.client.get(f"{engine.root_url}{health_path(self.kind)}", timeout=2.0)).status_code == 200
        except httpx.ConnectError:
            ok, refused = False, True
        except httpx.HTTPError:
            ok = False
        engine.failed_probes = 0 if ok else engine.failed_probes + 1
        if ok and not engine.healthy:
            log.warning("engine %s is back; its adapters will be reloaded on demand", engine.root_url)
            engine.forget_adapters()
            engine.healthy = True
        elif engine.healthy and (refused or engine.failed_probes >= self.down_after_failed_probes):
            log.warning("engine %s is down (%s)", engine.root_url,
                        "connection refused" if refused else f"{engine.failed_probes} failed probes in a row")
            engine.healthy = False
        return ok

    async def discover(self, engine: Engine) -> None:
        """Learn the base name and the adapters an engine already has (after a gateway restart)."""
        resp = await self.client.get(f"{engine.root_url}/v1/models", timeout=5.0)
        resp.raise_for_status()
        for m in resp.json()["data"]:
            if m.get("parent"):
                engine.loaded[m["id"]] = None
            else:
                engine.base_name = m["id"]

    async def watch_health(self, interval_s: float = 1.0) -> None:
        while True:
            await asyncio.gather(*(self.probe(e) for e in self.engines))
            await asyncio.sleep(interval_s)

    def replace_url(self, old_root_url: str, new_root_url: str) -> None:
        """The engine at ``old_root_url`` was restarted at ``new_root_url`` (a fresh port).

        The same :class:`Engine` keeps its in-flight and in-use counts (requests on the old
        process end by themselves and release them), gets the new URL, forgets its loaded
        adapters (a new process has none; they load again on demand) and starts healthy with
        no failed probes (the supervisor restarts it once it answers); the health watcher
        takes over from there. Raises ValueError for an unknown old URL or a new URL that
        another engine already has.
        """
        old, new = normalize_url(old_root_url), normalize_url(new_root_url)
        engine = next((e for e in self.engines if e.root_url == old), None)
        if engine is None:
            raise ValueError(f"old_root_url {old_root_url!r} is not one of the pool's engines "
                             f"({', '.join(e.root_url for e in self.engines)})")
        if new != old and any(e.root_url == new for e in self.engines):
            raise ValueError(f"new_root_url {new_root_url!r} is already an engine of the pool")
        engine.root_url = new
        engine.generation += 1
        engine.forget_adapters()
        engine.healthy = True
        engine.failed_probes = 0
        log.warning("engine %s restarted at %s; its adapters will be reloaded on demand", old, new)

    def set_urls(self, urls: list[str]) -> None:
        """Make the pool's engines exactly ``urls`` (see the module docstring); kept engines keep
        their state, new ones start out of rotation until a probe answers."""
        wanted = [normalize_url(u) for u in urls]
        if not wanted:
            raise ValueError("at least one engine URL is needed")
        have = {e.root_url: e for e in self.engines}
        if list(have) == wanted:
            return
        engines = []
        for url in dict.fromkeys(wanted):
            engine = have.get(url)
            if engine is None:
                engine = Engine(url, self.max_loaded)
                engine.healthy = False  # joins once it answers a probe
                log.warning("engine %s added", url)
            engines.append(engine)
        for url in have.keys() - set(wanted):
            log.warning("engine %s removed (its requests in flight finish)", url)
        self.engines = engines

    @property
    def base_name(self) -> str | None:
        return next((e.base_name for e in self.engines if e.base_name), self.default_base)

    def model_name(self, engine: Engine, version: str | None) -> str | None:
        """What a request to ``engine`` names as its model (see :mod:`~lorafleet.serving.engine_kinds`)."""
        return model_name(self.kind, engine.base_name or self.base_name, version)

    def ready(self) -> bool:
        return any(e.healthy for e in self.engines)

    # -- choice -----------------------------------------------------------------------------
    def pick(self, version: str | None) -> Engine:
        """The engine for one request (see the module docstring).

        Among equally loaded engines the one with fewer adapters loaded wins, so idle
        engines share new versions between them.
        """
        healthy = [e for e in self.engines if e.healthy]
        if not healthy:
            raise EngineUnavailable("no engine is available")
        least = min(healthy, key=lambda e: (e.inflight, len(e.loaded) + len(e.loading)))
        if version is None or least.has(version):
            return least
        warm = [e for e in healthy
                if e.has(version) and e.inflight <= least.inflight + self.affinity_slack_requests]
        return min(warm, key=lambda e: e.inflight) if warm else least

    def acquire(self, engine: Engine, version: str | None) -> None:
        """Hold ``version`` on ``engine`` for one request: it is not unloaded meanwhile."""
        engine.inflight += 1
        if version is not None:
            engine.in_use[version] = engine.in_use.get(version, 0) + 1

    def release(self, engine: Engine, version: str | None) -> None:
        engine.inflight -= 1
        if version is not None:
            engine.in_use[version] -= 1
            if engine.in_use[version] == 0:
                del engine.in_use[version]

    @contextlib.asynccontextmanager
    async def lease(self, engine: Engine, version: str | None) -> AsyncIterator[None]:
        self.acquire(engine, version)
        try:
            yield
        finally:
            self.release(engine, version)

    # -- adapters ---------------------------------------------------------------------------
    async def ensure_loaded(self, engine: Engine, version: str) -> None:
        """Load ``version`` on ``engine`` unless it is there; concurrent callers share one load."""
        engine.used(version)
        if version in engine.loaded:
            engine.loaded.move_to_end(version)
            return
        lock = engine.load_locks.setdefault(version, asyncio.Lock())
        engine.loading[version] = engine.loading.get(version, 0) + 1
        try:
            async with lock:
                if version not in engine.loaded:  # the first waiter loaded it; the rest just use it
                    await self._load(engine, version)
        finally:
            engine.loading[version] -= 1
            if not engine.loading[version]:
                del engine.loading[version]

    async def _load(self, engine: Engine, version: str) -> None:
        """Load ``version`` on ``engine`` the pool's way (see the module docstring): ``gateway``
        passes a verified local folder to vLLM's load endpoint; ``engine`` sends a one-token
        completion naming the version, which makes the engine's resolver fetch and verify it from
        the registry. Either refusal (a corrupted file, another base, an unknown version) is a
        permanent failure naming the reason."""
        if self.loading == "engine":
            path, body = load_request(self.kind, self.model_name(engine, version))
            url = f"{engine.root_url}{path}"
            refused = f"the engine at {engine.root_url} could not load it from the registry"
        else:
            try:
                path = await self.resolve_path(version)
            except Exception as exc:  # integrity or compatibility: the adapter never reaches vLLM
                from lorafleet.registry.errors import IncompatibleAdapter, IntegrityError

                permanent = isinstance(exc, IntegrityError | IncompatibleAdapter)  # else e.g. S3 down: retry later
                raise AdapterLoadFailed(version, str(exc), permanent=permanent) from exc
            url = f"{engine.root_url}/v1/load_lora_adapter"
            body = {"lora_name": version, "lora_path": str(path)}
            refused = "engine answered"
        await self._evict_idle(engine)
        generation = engine.generation
        started = time.perf_counter()
        try:
            resp = await self.client.post(url, json=body, timeout=120.0)
        except httpx.HTTPError as exc:
            if self.loading == "engine" and isinstance(exc, httpx.ConnectError):
                engine.healthy = False  # its port refuses: the process is gone
            raise translate(exc, engine.root_url) from exc
        already = self.loading == "gateway" and "already" in resp.text
        if resp.status_code != 200 and not already:
            raise AdapterLoadFailed(version, f"{refused} ({resp.status_code}): {resp.text[:400]}",
                                    permanent=400 <= resp.status_code <= 500)  # it refused these files
        if engine.generation != generation:  # the engine was replaced meanwhile: the new one lacks it
            raise EngineUnavailable(f"the engine at {url} was restarted while {version} loaded")
        engine.loaded[version] = None
        engine.loads_total += 1
        log.info("loaded %s on %s in %.0f ms", version, engine.root_url, (time.perf_counter() - started) * 1e3)

    async def _evict_idle(self, engine: Engine) -> None:
        while len(engine.loaded) >= engine.max_loaded:
            idle = min((v for v in engine.loaded if v not in engine.in_use), default=None,
                       key=lambda v: engine.uses.get(v, 0))  # fewest recent uses; min keeps the oldest of equals
            if idle is None:
                return  # all in use: vLLM's own CPU LRU copes; never unload a version in use
            del engine.loaded[idle]
            if can_unload(self.kind):  # Ray Serve LLM keeps its own LRU (max_cpu_loras) and has no such endpoint
                with contextlib.suppress(httpx.HTTPError):
                    await self.client.post(f"{engine.root_url}/v1/unload_lora_adapter",
                                           json={"lora_name": idle}, timeout=30.0)
            engine.unloads_total += 1
            self.on_unload(engine, idle)
            log.info("unloaded idle %s from %s", idle, engine.root_url)
