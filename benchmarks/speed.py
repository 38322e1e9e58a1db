"""Speed and memory, side by side in one process, as absolute numbers and ratios:

1. training step time and peak memory of VLSA (cnn backbone; medsam frozen with and without the
   feature cache) vs a MONAI U-Net of comparable trainable parameter count, at 128 and 256 px;
2. inference images/s;
3. EM Aggregation vs a non-local (self-attention) block on the same feature map, 16² .. 128²;
4. the LiteMedSAM encoder, eager fp32 vs its fast paths, against the measured matmul peak, and
   `vlsa predict` end to end on 50 fundus ROIs (benchmarks/encoder_speed.py).

CPU memory is the peak resident-set growth during one step (sampled every 2 ms), measured in a
child process so the sampler's malloc setting does not slow the timed steps; GPU memory is
torch.cuda.max_memory_allocated. `--device cuda` uses bf16 autocast.

    python benchmarks/speed.py                 # CPU, writes benchmarks/results/speed_cpu.{md,json}
    python benchmarks/speed.py --device cuda   # GPU (<= 5 minutes), writes speed_cuda.{md,json}
    python benchmarks/speed.py --encoder-only  # only section 4 (a few minutes on 2 cores); keeps the
                                               # other sections of an existing result file
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import psutil
import torch
from torch import nn

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import provenance, provenance_markdown  # noqa: E402
from encoder_speed import encoder_markdown, measure_encoder, measure_predict  # noqa: E402
from plots import plot_em_scaling  # noqa: E402

from vlsa.config import build_config  # noqa: E402
from vlsa.data.spec import FUNDUS  # noqa: E402
from vlsa.losses import SegmentationLoss  # noqa: E402
from vlsa.models import build_model  # noqa: E402
from vlsa.models.aggregation import EMAggregation  # noqa: E402
from vlsa.models.backbones import cache  # noqa: E402
from vlsa.utils.atomic import write_json, write_text  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]


def _fix_malloc() -> None:
    """Make RSS track live tensors on CPU: a fixed mmap threshold (glibc otherwise raises it after
    the first large free and keeps later tensors in the heap, invisible to RSS sampling)."""
    try:
        import ctypes

        libc = ctypes.CDLL("libc.so.6")
        libc.mallopt(-3, 128 * 1024)  # M_MMAP_THRESHOLD
        libc.malloc_trim(0)
    except OSError:
        pass


class PeakMemory:
    """Peak memory growth during a block: CUDA allocator on GPU, sampled RSS on CPU."""

    def __init__(self, device: torch.device):
        self.device, self.peak = device, 0

    def __enter__(self):
        if self.device.type == "cuda":
            torch.cuda.synchronize()
            torch.cuda.reset_peak_memory_stats()
            self.base = torch.cuda.memory_allocated()
        else:
            import gc

            gc.collect()
            _fix_malloc()
            self.proc = psutil.Process()
            self.base = self.proc.memory_info().rss
            self.top, self.running = self.base, True
            self.thread = threading.Thread(target=self._poll, daemon=True)
            self.thread.start()
        return self

    def _poll(self):
        while self.running:
            self.top = max(self.top, self.proc.memory_info().rss)
            time.sleep(0.002)

    def __exit__(self, *exc):
        if self.device.type == "cuda":
            torch.cuda.synchronize()
            self.peak = torch.cuda.max_memory_allocated() - self.base
        else:
            self.running = False
            self.thread.join()
            self.peak = self.top - self.base


def trainable(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters() if p.requires_grad)


def vlsa_model(backbone: str, size: int, cache_on: bool = True):
    cfg = build_config({}, ["model.name=vlsa", f"model.backbone.name={backbone}", f"data.image_size={size}",
                            f"model.backbone.cache={str(cache_on).lower()}"])
    return build_model(cfg, FUNDUS)


def unet_like(params: int):
    """The MONAI U-Net (as the ERM baseline builds it) whose trainable parameter count is closest."""
    best = None
    for base in (8, 12, 16, 24, 32, 48):
        channels = [base * 2**i for i in range(5)]
        cfg = build_config({}, ["model.name=unet", f"model.unet.channels={channels}"])
        model = build_model(cfg, FUNDUS)
        if best is None or abs(trainable(model) - params) < abs(trainable(best) - params):
            best = model
    return best


def time_train_step(model, size, batch, device, amp, steps, track):
    model.to(device).train()
    opt = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=1e-3)
    loss_fn = SegmentationLoss()
    x = torch.randn(batch, 3, size, size, device=device)
    y = torch.randint(0, 3, (batch, size, size), device=device)

    def step():
        with torch.autocast(device.type, dtype=torch.bfloat16, enabled=amp):
            logits = model(x)
        loss = loss_fn(logits.float(), y)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()

    return measure(step, device, steps, track)  # the warm-up step also fills the feature cache once


def measure(step, device, steps, track: str) -> tuple[float, float]:
    """One warm-up call, then (seconds per call, peak memory growth in bytes) over `steps` calls.

    track: "time", "memory" or "both". On CPU the two are measured in separate processes: the RSS
    sampler needs a fixed mmap threshold (see _fix_malloc), which makes every large allocation a
    system call and would slow the very steps being timed (about 2x for the U-Net at 128 px)."""
    step()
    _sync(device)
    if track == "time":
        start = time.perf_counter()
        for _ in range(steps):
            step()
        _sync(device)
        return (time.perf_counter() - start) / steps, float("nan")
    with PeakMemory(device) as mem:
        start = time.perf_counter()
        for _ in range(steps if track == "both" else 1):
            step()
        _sync(device)
        seconds = (time.perf_counter() - start) / steps if track == "both" else float("nan")
    return seconds, mem.peak


@torch.no_grad()
def images_per_second(model, size, batch, device, amp, repeats):
    model.to(device).eval()
    x = torch.randn(batch, 3, size, size, device=device)
    with torch.autocast(device.type, dtype=torch.bfloat16, enabled=amp):
        model(x)
        _sync(device)
        start = time.perf_counter()
        for i in range(repeats):
            model(x + i + 1)  # new content each time: the feature cache cannot help at inference
        _sync(device)
    return batch * repeats / (time.perf_counter() - start)


class NonLocal(nn.Module):
    """Self-attention over all pixels (non-local block): O(N²) in the number of pixels N."""

    def __init__(self, channels: int):
        super().__init__()
        self.qkv = nn.Conv2d(channels, 3 * channels, 1)
        self.out = nn.Conv2d(channels, channels, 1)

    def forward(self, x):
        b, c, h, w = x.shape
        q, k, v = self.qkv(x).flatten(2).chunk(3, dim=1)
        attn = torch.softmax(torch.einsum("bcn,bcm->bnm", q, k) / c**0.5, dim=-1)
        return x + self.out(torch.einsum("bnm,bcm->bcn", attn, v).reshape(b, c, h, w))


def time_block(block, side, channels, device, amp, steps, track):
    block.to(device).train()
    x = torch.randn(1, channels, side, side, device=device, requires_grad=True)

    def step():
        with torch.autocast(device.type, dtype=torch.bfloat16, enabled=amp):
            out = block(x)
            out = out[0] if isinstance(out, tuple) else out
        out.float().mean().backward()

    return measure(step, device, steps, track)


def _sync(device):
    if device.type == "cuda":
        torch.cuda.synchronize()


def measure_all(args, device, amp, steps, track) -> tuple[list, list]:
    rows, em_rows = [], []
    for size in args.sizes:
        variants = {
            "VLSA (cnn)": lambda s=size: vlsa_model("cnn", s),
            "VLSA (medsam, frozen, cached)": lambda s=size: vlsa_model("medsam", s, True),
            "VLSA (medsam, frozen, no cache)": lambda s=size: vlsa_model("medsam", s, False),
        }
        cnn_params = trainable(variants["VLSA (cnn)"]())
        models = {"ERM U-Net (MONAI)": lambda p=cnn_params: unet_like(p), **variants}
        for name, make in models.items():
            cache.clear()
            model = make()
            step_s, peak = time_train_step(model, size, args.batch, device, amp, steps, track)
            ips = float("nan")
            if track != "memory":
                ips = images_per_second(make() if "cached" in name else model, size, args.batch, device, amp,
                                        max(1, steps // 2))
            rows.append({"size": size, "model": name, "trainable_params": trainable(model), "step_s": step_s,
                         "peak_mb": peak / 2**20, "infer_img_s": ips})
            print(track, rows[-1], flush=True)
    for side in args.em_sides:
        for name, block in (("EM Aggregation (K=64, T=3)", EMAggregation(64)), ("non-local self-attention", NonLocal(64))):
            try:
                sec, peak = time_block(block, side, 64, device, amp, steps, track)
            except RuntimeError as exc:  # out of memory at the largest map
                sec, peak = float("nan"), float("nan")
                print(f"{name} at {side}²: {exc.__class__.__name__}", flush=True)
            em_rows.append({"side": side, "pixels": side * side, "block": name, "step_s": sec, "peak_mb": peak / 2**20})
            print(track, em_rows[-1], flush=True)
    return rows, em_rows


def memory_in_child(argv: list[str], rows: list, em_rows: list) -> None:
    """Run the memory pass in a fresh process and copy its peaks into the timed rows."""
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / "memory.json"
        subprocess.run([sys.executable, __file__, *argv, "--phase", "memory", "--phase-out", str(out)], check=True)
        memory = json.loads(out.read_text())
    for mine, theirs in ((rows, memory["train"]), (em_rows, memory["em_vs_attention"])):
        for row, other in zip(mine, theirs, strict=True):
            row["peak_mb"] = other["peak_mb"]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--device", default="cpu", choices=["cpu", "cuda"])
    parser.add_argument("--sizes", nargs="+", type=int, default=[128, 256])
    parser.add_argument("--batch", type=int, default=4)
    parser.add_argument("--steps", type=int, default=3)
    parser.add_argument("--em-sides", nargs="+", type=int, default=[16, 32, 64, 128])
    parser.add_argument("--out", default=str(ROOT / "benchmarks" / "results"))
    parser.add_argument("--quick", action="store_true", help="tiny sizes: checks the script in seconds")
    parser.add_argument("--encoder-only", action="store_true", help="only the encoder and predict section")
    parser.add_argument("--encoder-repeats", type=int, default=3)
    parser.add_argument("--encoder-paths", nargs="+", help="encoder paths to time (default: off and every fast path "
                                                            "this device supports)")
    parser.add_argument("--predict-images", type=int, default=50, help="0 skips the predict measurement")
    parser.add_argument("--threads", type=int, default=2, help="torch threads for every measurement")
    parser.add_argument("--phase", choices=["all", "memory"], default="all", help=argparse.SUPPRESS)
    parser.add_argument("--phase-out", help=argparse.SUPPRESS)
    argv = sys.argv[1:]
    args = parser.parse_args()
    if args.quick:
        args.sizes, args.steps, args.em_sides, args.batch = [64], 1, [16, 32], 2
    torch.set_num_threads(args.threads)
    device = torch.device(args.device)
    amp = device.type == "cuda"
    steps = args.steps * (10 if amp else 1)
    if args.phase == "memory":  # the CPU memory pass, in its own process
        _fix_malloc()
        rows, em_rows = measure_all(args, device, amp, steps, "memory")
        write_json(args.phase_out, {"train": rows, "em_vs_attention": em_rows})
        return
    prov = provenance(args.device)
    out = Path(args.out)
    name = f"speed_{args.device}" + ("_quick" if args.quick else "")
    previous = json.loads((out / f"{name}.json").read_text()) if (out / f"{name}.json").is_file() else {}
    if args.encoder_only and previous.get("train"):  # keep the other sections of the last full run
        rows, em_rows, train_prov = previous["train"], previous["em_vs_attention"], previous["provenance"]
    elif args.encoder_only:
        rows, em_rows, train_prov = [], [], prov
    else:
        rows, em_rows = measure_all(args, device, amp, steps, "both" if device.type == "cuda" else "time")
        if device.type == "cpu":
            memory_in_child(argv, rows, em_rows)
        train_prov = prov
    encoder = measure_encoder(device, batches=(1,) if args.quick else (1, 8),
                              repeats=1 if args.quick else args.encoder_repeats, paths=args.encoder_paths)
    encoder["provenance"] = prov
    predict = measure_predict(device, 2 if args.quick else args.predict_images) if args.predict_images else None
    write_json(out / f"{name}.json", {"provenance": train_prov, "batch": previous.get("batch", args.batch)
                                      if args.encoder_only else args.batch, "train": rows,
                                      "em_vs_attention": em_rows, "encoder": encoder, "predict": predict})
    text = markdown(rows, em_rows, train_prov, args.batch, f"{name}_em.png") if rows else "# Speed and memory\n"
    write_text(out / f"{name}.md", text + encoder_markdown(encoder, predict, provenance_markdown(prov)))
    if em_rows and not args.encoder_only:
        plot_em_scaling(em_rows, out / f"{name}_em.png")
    print((out / f"{name}.md").read_text())


def _ratio(value_mb: float, base_mb: float) -> str:
    """A memory ratio, or n/a when the base is below what RSS sampling resolves (about 1 MB)."""
    return f"{value_mb / base_mb:.1f}×" if base_mb >= 1.0 else "n/a"


def markdown(rows, em_rows, prov, batch, em_png: str) -> str:
    lines = ["# Speed and memory\n", provenance_markdown(prov),
             f"\n## Training step (batch {batch}, Dice+CE, AdamW) and inference\n",
             "Ratios are against the ERM U-Net at the same size. The cached medsam step excludes the one-off "
             "feature computation (done in the warm-up step, as the cache does once per image); inference always "
             "runs the backbone (new images). Peak memory is the growth during one step (CPU: resident memory, "
             "sampled in a separate process so the sampler does not slow the timed steps).\n",
             "| size | model | trainable params | step (s) | step ratio | peak memory (MB) | memory ratio | inference (img/s) | inference ratio |",
             "|---|---|---|---|---|---|---|---|---|"]
    for size in sorted({r["size"] for r in rows}):
        base = next(r for r in rows if r["size"] == size and r["model"].startswith("ERM"))
        for r in (r for r in rows if r["size"] == size):
            lines.append(f"| {size} | {r['model']} | {r['trainable_params'] / 1e6:.2f} M | {r['step_s']:.3f} | "
                         f"{r['step_s'] / base['step_s']:.1f}× | {r['peak_mb']:.0f} | "
                         f"{_ratio(r['peak_mb'], base['peak_mb'])} | {r['infer_img_s']:.1f} | "
                         f"{r['infer_img_s'] / base['infer_img_s']:.2f}× |")
    lines += ["\n## EM Aggregation vs self-attention on one 64-channel feature map (forward + backward)\n",
              f"![EM vs attention scaling]({em_png})\n",
              "| map | pixels N | EM (s) | attention (s) | attention / EM time | EM memory (MB) | attention memory (MB) | attention / EM memory |",
              "|---|---|---|---|---|---|---|---|"]
    for side in sorted({r["side"] for r in em_rows}):
        em = next(r for r in em_rows if r["side"] == side and r["block"].startswith("EM"))
        at = next(r for r in em_rows if r["side"] == side and not r["block"].startswith("EM"))
        lines.append(f"| {side}×{side} | {side * side} | {em['step_s']:.4f} | {at['step_s']:.4f} | "
                     f"{at['step_s'] / em['step_s']:.1f}× | {em['peak_mb']:.1f} | {at['peak_mb']:.1f} | "
                     f"{_ratio(at['peak_mb'], em['peak_mb'])} |")
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    main()
