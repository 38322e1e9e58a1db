"""CPU time per image of the LiteMedSAM encoder paths at ONE thread (eager fp32, the PyTorch fast paths,
OpenVINO, ONNX Runtime), with user/system time, page faults and per-map cosine to eager fp32.

Process CPU time (time.process_time, after 2 warm-up images) is what a path costs whatever else runs on a
shared machine; one thread makes it comparable between paths. Each path runs on the same 256 px synthetic
fundus ROIs (z-scored like model inputs), one image per call. `--malloc` reruns the PyTorch paths in a
child process with glibc's mmap threshold raised (mallopt M_MMAP_THRESHOLD / M_TRIM_THRESHOLD): PyTorch's
large temporaries otherwise come from fresh mmaps, page-faulted in and returned on every call.

    PYTHONPATH=src python benchmarks/encoder_cpu_1thread.py --malloc 256
writes benchmarks/results/encoder_cpu_1thread.{json,md}.
"""

from __future__ import annotations

import argparse
import ctypes
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("OMP_NUM_THREADS", "1")
import torch  # noqa: E402

sys.path.insert(0, str(Path(__file__).resolve().parent))
from encoder_speed import cosines, fundus_images  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
TORCH_PATHS = ("off", "fused", "bf16", "bf16-all")


def set_malloc(mmap_mb: int) -> None:
    libc = ctypes.CDLL("libc.so.6")
    libc.mallopt(-3, mmap_mb << 20)  # M_MMAP_THRESHOLD: blocks below it come from the reused heap
    libc.mallopt(-1, 8 * mmap_mb << 20)  # M_TRIM_THRESHOLD: keep that much free heap instead of returning it


def onnxruntime_runner(encoder, folder: Path):
    """ONNX Runtime, fp32, all graph optimisations, 1 intra-op thread; None when not installed."""
    try:
        import onnxruntime as ort
    except ImportError:
        return None
    from vlsa.models.backbones.openvino_encoder import _Stage0, _Transformer

    class Whole(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.stage0, self.rest = _Stage0(encoder), _Transformer(encoder)

        def forward(self, x):
            h = self.stage0(x)
            return (h.transpose(1, 2).reshape(1, 128, 128, 128),) + tuple(self.rest(h))

    path = folder / "encoder.onnx"
    torch.onnx.export(Whole().eval(), (torch.rand(1, 3, 256, 256),), str(path), dynamo=True, external_data=False)
    options = ort.SessionOptions()
    options.intra_op_num_threads = options.inter_op_num_threads = 1
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    session = ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
    name = session.get_inputs()[0].name
    return lambda x: [torch.from_numpy(o) for o in session.run(None, {name: x.numpy()})]


def measure(paths, n: int, malloc_mb: int) -> list[dict]:
    from vlsa.data.io import load_image
    from vlsa.models.backbones.medsam import MedSAMBackbone

    if malloc_mb:
        set_malloc(malloc_mb)
    torch.set_num_threads(1)
    _, files = fundus_images(n)
    imgs = torch.stack([torch.from_numpy(load_image(f, 3)) for f in files])
    x = ((imgs - imgs.mean()) / imgs.std()).split(1)
    backbone = MedSAMBackbone(3, 256, fast="off")
    rows = []
    with torch.no_grad():
        reference = [backbone(i) for i in x]
        for path in paths:
            run = None
            if path in TORCH_PATHS:
                backbone.fast = path
                run = backbone
            elif path.startswith("openvino") and malloc_mb == 0:
                from vlsa.models.backbones import openvino_encoder

                if openvino_encoder.available():
                    enc = openvino_encoder.OpenVINOEncoder(backbone.encoder, threads=1,
                                                           all_bf16=path == "openvino-all-bf16")
                    run = lambda i, enc=enc: enc(backbone._prepare(i))  # noqa: E731
            elif path == "onnxruntime" and malloc_mb == 0:
                ort = onnxruntime_runner(backbone.encoder, Path(tempfile.mkdtemp()))
                run = ort and (lambda i, ort=ort: ort(backbone._prepare(i)))
            if run is None:
                continue
            outs = [run(i) for i in x[:2]]  # warm-up (and the OpenVINO / ONNX Runtime first-call setup)
            r0, p0 = resource.getrusage(resource.RUSAGE_SELF), time.process_time()
            outs = [run(i) for i in x]
            r1, p1 = resource.getrusage(resource.RUSAGE_SELF), time.process_time()
            cos = [sum(c) / len(x) for c in zip(*[cosines(r, o) for r, o in zip(reference, outs)])]
            rows.append({"path": path, "malloc_mmap_mb": malloc_mb, "cpu_s_per_img": (p1 - p0) / len(x),
                         "user_s": (r1.ru_utime - r0.ru_utime) / len(x), "sys_s": (r1.ru_stime - r0.ru_stime) / len(x),
                         "page_faults": (r1.ru_minflt - r0.ru_minflt) / len(x), "cosine_per_level": cos,
                         "max_rss_mb": r1.ru_maxrss / 1024})
            print(json.dumps(rows[-1]), flush=True)
    return rows


def markdown(result: dict) -> str:
    base = next(r["cpu_s_per_img"] for r in result["rows"] if r["path"] == "off" and not r["malloc_mmap_mb"])
    lines = ["# LiteMedSAM encoder: CPU time per image at 1 thread (256 px)\n",
             f"Command: `{result['command']}`; torch {result['torch']}, {result['cpu']}; load average (1, 5, 15 min) "
             f"{', '.join(f'{v:.1f}' for v in result['load_average'])} (other 1-thread jobs were running: CPU time "
             "is what the path costs, but cache and memory-bandwidth contention can inflate it; re-measure on an "
             f"idle machine). {result['images']} synthetic fundus ROIs, one per call, after 2 warm-up calls. Speed-up: "
             "eager fp32 CPU s / path CPU s (default malloc). Cosine: per pyramid level (stride 2, 4, 4, neck), "
             "mean over pixels of the cosine over channels to eager fp32.\n",
             "| path | malloc mmap threshold | CPU s / image | user s | sys s | page faults / image | speed-up vs "
             "eager fp32 | cosine per level | min cosine >= 0.999 |", "|---|---|---|---|---|---|---|---|---|"]
    for r in result["rows"]:
        cos = " / ".join(f"{c:.5f}" for c in r["cosine_per_level"])
        lines.append(f"| {r['path']} | {str(r['malloc_mmap_mb']) + ' MB' if r['malloc_mmap_mb'] else 'glibc default'} "
                     f"| {r['cpu_s_per_img']:.3f} | {r['user_s']:.3f} | {r['sys_s']:.3f} | {r['page_faults']:.0f} | "
                     f"{base / r['cpu_s_per_img']:.2f}× | {cos} | {'yes' if min(r['cosine_per_level']) >= 0.999 else 'no'} |")
    return "\n".join(lines) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--paths", nargs="+", default=["off", "bf16", "bf16-all", "openvino", "openvino-all-bf16",
                                                        "onnxruntime"])
    parser.add_argument("--images", type=int, default=4)
    parser.add_argument("--malloc", type=int, default=0, help="also rerun the PyTorch paths with this mmap threshold (MB)")
    parser.add_argument("--child-malloc", type=int, default=0, help=argparse.SUPPRESS)
    parser.add_argument("--out", default=str(ROOT / "benchmarks" / "results"))
    args = parser.parse_args()
    if args.child_malloc:
        print("ROWS " + json.dumps(measure([p for p in args.paths if p in TORCH_PATHS], args.images, args.child_malloc)))
        return
    from vlsa.utils.atomic import write_json, write_text

    rows = measure(args.paths, args.images, 0)
    if args.malloc:
        child = subprocess.run([sys.executable, __file__, "--child-malloc", str(args.malloc), "--images",
                                str(args.images), "--paths", *args.paths], capture_output=True, text=True, check=True)
        rows += json.loads(next(ln for ln in child.stdout.splitlines() if ln.startswith("ROWS "))[5:])
    cpu = next((ln.split(":", 1)[1].strip() for ln in Path("/proc/cpuinfo").read_text().splitlines()
                if ln.startswith("model name")), "unknown CPU")
    result = {"command": "PYTHONPATH=src python benchmarks/encoder_cpu_1thread.py " + " ".join(sys.argv[1:]),
              "torch": torch.__version__, "cpu": cpu, "load_average": os.getloadavg(), "images": args.images,
              "threads": 1, "rows": rows}
    out = Path(args.out)
    write_json(out / "encoder_cpu_1thread.json", result)
    write_text(out / "encoder_cpu_1thread.md", markdown(result))
    print(markdown(result))


if __name__ == "__main__":
    main()
