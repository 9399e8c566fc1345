"""Training throughput: the Ray Train job vs the same TRL training in-process, and LoRA vs
QLoRA (NF4) memory and tokens/s. Prints a table and draws benchmarks/out/train_bench.png.

    LORAFLEET_HOME=/tmp/lfhome .venv/bin/python benchmarks/train_bench.py --steps 20

Each variant runs in its own process (clean peak memory). Throughput is measured "once
started": tokens over step time from step ``--skip`` on (model load, Ray start-up and the
first steps' warm-up excluded). Target: Ray >= 0.9x in-process.
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
CONFIG = ROOT / "examples" / "support-intents" / "train.yaml"
VARIANTS = ("inproc-lora", "ray-lora", "inproc-qlora")


def steady_rate(timeline: list[tuple[int, int, float]], skip: int) -> float:
    """tokens/s between step ``skip`` and the last step, from (step, tokens, step-seconds) samples."""
    pts = [t for t in timeline if t[0] >= skip]
    if len(pts) < 2:
        return float("nan")
    (_, k0, t0), (_, k1, t1) = pts[0], pts[-1]
    return (k1 - k0) / (t1 - t0) if t1 > t0 else float("nan")


def overrides(args, quant: str) -> list[str]:
    return [f"base={args.base}", f"max_steps={args.steps}", f"quantization={quant}", "data.eval=null",
            f"checkpoint_every_steps={args.steps + 1}", f"cpus_per_worker={args.cpus}", "bf16_autocast=false",
            *args.set]


def run_variant(variant: str, args) -> dict:
    from lorafleet.core.settings import get_settings
    from lorafleet.training.config import load_train_config

    settings = get_settings()
    quant = "nf4" if "qlora" in variant else "none"
    cfg = load_train_config(CONFIG, overrides(args, quant))
    base_dir = settings.layout.base(cfg.base)
    t0 = time.perf_counter()
    if variant.startswith("ray"):
        from lorafleet.training.job import ensure_ray, run_training_job

        ensure_ray(num_cpus=args.cpus)
        job = run_training_job(cfg, settings, base_dir, show_progress=False)
        timeline, steps = job.timeline, job.metrics["global_step"]
    else:
        import tempfile

        import torch
        from transformers import TrainerCallback

        from lorafleet.training.job import job_payload
        from lorafleet.training.worker import build_trainer

        torch.set_num_threads(args.cpus)
        timeline: list = []

        class Clock(TrainerCallback):
            def __init__(self):
                self.elapsed, self.t = 0.0, None

            def on_step_begin(self, a, state, control, **kw):
                self.t = time.perf_counter()

            def on_step_end(self, a, state, control, **kw):
                self.elapsed += time.perf_counter() - self.t
                timeline.append((state.global_step, int(state.num_input_tokens_seen or 0), self.elapsed))

        payload = job_payload(cfg, base_dir)
        trainer = build_trainer(payload, tempfile.mkdtemp(prefix="train-bench-"), [Clock()])
        steps = trainer.train().global_step
    return {"variant": variant, "steps": steps, "tokens_per_s": steady_rate(timeline, args.skip),
            "wall_s": time.perf_counter() - t0,
            "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--base", default="smollm2-135m-instruct")
    ap.add_argument("--steps", type=int, default=20)
    ap.add_argument("--skip", type=int, default=3, help="Steps of warm-up left out of the rate.")
    ap.add_argument("--cpus", type=int, default=2)
    ap.add_argument("--variants", default=",".join(VARIANTS))
    ap.add_argument("--out", type=Path, default=ROOT / "benchmarks" / "out")
    ap.add_argument("--set", action="append", default=[], help="extra config override key=value (last wins)")
    ap.add_argument("--one", help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.one:
        print("RESULT " + json.dumps(run_variant(args.one, args)), flush=True)
        return
    results = []
    for variant in args.variants.split(","):
        cmd = [sys.executable, __file__, "--one", variant, "--base", args.base, "--steps", str(args.steps),
               "--skip", str(args.skip), "--cpus", str(args.cpus), *(f"--set={x}" for x in args.set)]
        print(f"running {variant} ...", flush=True)
        proc = subprocess.run(cmd, capture_output=True, text=True)
        line = next((x for x in proc.stdout.splitlines() if x.startswith("RESULT ")), None)
        if line is None:
            print(proc.stdout[-2000:], proc.stderr[-3000:])
            raise SystemExit(f"{variant} failed")
        results.append(json.loads(line[7:]))
    by = {r["variant"]: r for r in results}
    print(f"\n{'variant':<14}{'steps':>6}{'tokens/s':>10}{'peak RSS MB':>13}{'wall s':>8}")
    for r in results:
        print(f"{r['variant']:<14}{r['steps']:>6}{r['tokens_per_s']:>10.1f}{r['peak_rss_mb']:>13.0f}{r['wall_s']:>8.1f}")
    if "ray-lora" in by and "inproc-lora" in by:
        ratio = by["ray-lora"]["tokens_per_s"] / by["inproc-lora"]["tokens_per_s"]
        print(f"Ray / in-process throughput: {ratio:.2f}x (target >= 0.9x)")
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "train_bench.json").write_text(json.dumps(results, indent=1))
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (a, b) = plt.subplots(1, 2, figsize=(9, 3.5))
    names = [r["variant"] for r in results]
    a.bar(names, [r["tokens_per_s"] for r in results], color="tab:blue")
    a.set_title("training tokens/s (steady state)")
    b.bar(names, [r["peak_rss_mb"] for r in results], color="tab:orange")
    b.set_title("peak RSS of the process, MB (ray: driver)")
    fig.tight_layout()
    fig.savefig(args.out / "train_bench.png", dpi=120)
    print(f"wrote {args.out / 'train_bench.png'}")


if __name__ == "__main__":
    main()
