"""Registry fetch benchmark: how long an engine's fetch of ``name@N`` takes (resolve the version,
download and sha256 its files, check it against the base), on an idle machine, by store latency.

An S3 registry (moto on loopback, its own process) with ``--versions`` random rank-8 LoRAs
(q_proj, v_proj) on the tiny base, pushed from one home; the engine's ``RegistryFetcher`` in
another home fetches each once (cold: nothing on its disk) and again (on disk: files verified
locally, manifest and removed marker still read). ``--rtt-ms`` adds that many milliseconds to
every request outside moto's one-at-a-time lock, as a remote store's round trip: reads sent
together overlap it, reads one after another add it up.

Prints the table; writes benchmarks/out/registry_fetch_bench.json and .png.

    .venv/bin/python benchmarks/registry_fetch_bench.py [--versions 40] [--rtt-ms 0,20]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path
from unittest import mock

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from benchmarks.common import OUT, pct, print_table  # noqa: E402
from lorafleet.core.settings import Settings  # noqa: E402
from lorafleet.platform.base_pull import pull_base  # noqa: E402
from lorafleet.registry.storage import S3Storage  # noqa: E402
from lorafleet.registry.store import Registry  # noqa: E402
from tests.registry_backends import moto_s3  # noqa: E402
from tests.tiny import build_tiny_llama, make_random_lora  # noqa: E402

BUCKET, PREFIX, BASE = "fetch-bench", "fleet", "tiny-llama"


def run(root: Path, tiny: Path, versions: int, rtt_ms: float) -> dict:
    from lorafleet.serving.lora_resolver import RegistryFetcher

    with moto_s3(BUCKET, delay_s=rtt_ms / 1e3) as endpoint:
        pusher = Settings(home=root / "pusher", registry_url=f"s3://{BUCKET}/{PREFIX}", s3_endpoint_url=endpoint)
        base, _ = pull_base(pusher, BASE, tiny)
        registry = Registry(S3Storage(BUCKET, PREFIX, endpoint), root / "pusher" / "cache")
        refs = [registry.push(make_random_lora(pusher.layout.base(BASE), root / "src" / f"a{i}", r=8, seed=i,
                                               target_modules=("q_proj", "v_proj")), f"bench-{i:03d}", base).ref
                for i in range(versions + 1)]
        engine = Settings(home=root / "engine")
        pull_base(engine, BASE, tiny)
        env = {"LORAFLEET_HOME": str(engine.home), "LORAFLEET_REGISTRY_URL": f"s3://{BUCKET}/{PREFIX}",
               "LORAFLEET_S3_ENDPOINT_URL": endpoint}
        with mock.patch.dict(os.environ, env):  # the fetcher reads the engine's settings from its environment
            fetcher = RegistryFetcher(engine.layout.base(BASE))
            fetcher.fetch(refs[0])  # the client's first connection and imports, not counted
            timed = {"cold": [], "on disk": []}
            for kind in timed:
                for ref in refs[1:]:
                    started = time.perf_counter()
                    assert fetcher.fetch(ref) is not None, ref
                    timed[kind].append((time.perf_counter() - started) * 1e3)
    return {"rtt_ms": rtt_ms, **{f"{k}_{s}": f(v) for k, v in timed.items()
                                 for s, f in (("p50_ms", statistics.median), ("p95_ms", lambda v: pct(v, 95)))}}


def plot(rows: list[dict], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7, 4))
    xs = range(len(rows))
    for j, kind in enumerate(("cold", "on disk")):
        ax.bar([x + j * 0.4 for x in xs], [r[f"{kind}_p50_ms"] for r in rows], 0.4, label=f"{kind} (median)")
    ax.set_xticks([x + 0.2 for x in xs], [f"+{r['rtt_ms']:g} ms a request" for r in rows])
    ax.set(ylabel="fetch ms", title="Engine fetch of name@N from S3 (moto), idle machine")
    ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=110)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--versions", type=int, default=40)
    parser.add_argument("--rtt-ms", default="0,20", help="added to every S3 request, comma-separated")
    args = parser.parse_args()
    rows = []
    with tempfile.TemporaryDirectory(prefix="fetch-bench-") as tmp:
        tiny = build_tiny_llama(Path(tmp) / "tiny")
        for rtt in (float(x) for x in args.rtt_ms.split(",")):
            print(f"+{rtt:g} ms a request: pushing {args.versions} versions, fetching each twice", flush=True)
            rows.append(run(Path(tmp) / f"rtt{rtt:g}", tiny, args.versions, rtt))
    print_table("engine fetch of name@N (ms)", ["+ms a request", "cold p50", "cold p95", "on disk p50", "on disk p95"],
                [[r["rtt_ms"], r["cold_p50_ms"], r["cold_p95_ms"], r["on disk_p50_ms"], r["on disk_p95_ms"]]
                 for r in rows])
    OUT.mkdir(exist_ok=True)
    (OUT / "registry_fetch_bench.json").write_text(json.dumps(rows, indent=2))
    plot(rows, OUT / "registry_fetch_bench.png")
    print(f"\nwrote {OUT / 'registry_fetch_bench.json'} and {OUT / 'registry_fetch_bench.png'}")


if __name__ == "__main__":
    main()
