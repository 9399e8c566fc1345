"""Registry push and pull throughput (MB/s) for a 10 MB adapter, local folder vs S3 (a real
moto server on loopback). Printed and plotted; never pass/fail.

Run: .venv/bin/python benchmarks/registry_bench.py [--repeat 5]
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from benchmarks.common import OUT, print_table  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=5)
    args = parser.parse_args()
    home = Path(tempfile.mkdtemp(prefix="lorafleet-regbench-"))
    os.environ["LORAFLEET_HOME"] = str(home)

    from lorafleet.core.settings import get_settings
    from lorafleet.platform.base_pull import pull_base
    from tests.tiny import build_tiny_llama, make_random_lora
    from lorafleet.registry.storage import LocalStorage, S3Storage
    from lorafleet.registry.store import Registry
    from tests.registry_backends import moto_s3

    settings = get_settings()
    base, _ = pull_base(settings, "tiny-llama", build_tiny_llama(home / "src-tiny"))
    # rank 1344 on q/k/v/o/gate/up/down of the tiny model: about 10 MB of float32 weights
    adapter = make_random_lora(settings.layout.base("tiny-llama"), home / "adapter", r=1344,
                               target_modules=("q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj",
                                               "down_proj"))
    size_mb = sum(p.stat().st_size for p in adapter.iterdir()) / 1e6
    print(f"adapter: {size_mb:.1f} MB")
    rows = []
    with moto_s3("lorafleet-bench") as endpoint:
        backends = {"local": Registry(LocalStorage(home / "reg"), home / "cache"),
                    "s3 (moto)": Registry(S3Storage("lorafleet-bench", "b", endpoint), home / "cache-s3")}
        for label, reg in backends.items():
            push_s, pull_s = [], []
            for i in range(args.repeat):
                t0 = time.perf_counter()
                m = reg.push(adapter, "bench", base)
                push_s.append(time.perf_counter() - t0)
                t0 = time.perf_counter()
                reg.pull(m.ref, home / f"pulled-{label[:2]}-{i}")
                pull_s.append(time.perf_counter() - t0)
            best_push, best_pull = min(push_s), min(pull_s)
            rows.append([label, size_mb / best_push, size_mb / best_pull, best_push * 1e3, best_pull * 1e3])
    print_table(f"registry throughput, {size_mb:.1f} MB adapter, best of {args.repeat}",
                ["backend", "push MB/s", "pull MB/s", "push ms", "pull ms"], rows)

    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    OUT.mkdir(exist_ok=True)
    fig, ax = plt.subplots(figsize=(6, 4))
    x = range(len(rows))
    ax.bar([i - 0.2 for i in x], [r[1] for r in rows], 0.4, label="push")
    ax.bar([i + 0.2 for i in x], [r[2] for r in rows], 0.4, label="pull (verified)")
    ax.set_xticks(list(x), [r[0] for r in rows])
    ax.set(ylabel="MB/s", title=f"registry throughput ({size_mb:.0f} MB adapter)")
    ax.legend()
    fig.tight_layout()
    fig.savefig(OUT / "registry_bench.png", dpi=100)
    print(f"plot: {OUT / 'registry_bench.png'}")


if __name__ == "__main__":
    main()
