"""The `vlsa` command. Subcommands parse arguments and call into the modules; no logic here."""

from __future__ import annotations

import argparse
import logging
import os
import sys
from pathlib import Path

from vlsa import __version__
from vlsa.data.domains import DATASETS
from vlsa.errors import Interrupted, VlsaError

# vlsa.config.TTA_MODES, spelled here so that the CLI starts without importing the config (pydantic)
TTA_CHOICES = ("off", "flip")
TTA_HELP = ("test-time augmentation: off, or flip (mean class probabilities of each image and its left-right "
            "mirror; twice the inference time). Default: the run's eval.tta")
THREADS_HELP = ("torch CPU threads for this command (default: train.threads, else $OMP_NUM_THREADS, else on "
                "--resume the run's own count, else the cores other processes leave free; see docs/engine.md)")
EPILOG = "Errors in the input are reported as one line naming the file or key, with exit status 2."


def _overrides(pairs: list[str] | None) -> list[str]:
    """--set overrides, after those in $VLSA_SET (whitespace-separated KEY=VALUE, e.g. for a quick
    trial: VLSA_SET="train.steps=20 data.image_size=64"); the command line wins."""
    return [*os.environ.get("VLSA_SET", "").split(), *(pairs or [])]


def _positive(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        value = 0
    if value < 1:
        raise argparse.ArgumentTypeError(f"expected a positive whole number, got {text!r}")
    return value


def default_run_dir(config) -> str:
    """runs/<dataset>-<model>[-<backbone>]-<sources>-s<seed>: runs with different backbones never collide."""
    model = config.model.name if config.model.name != "vlsa" else f"vlsa-{config.model.backbone.name}"
    return f"runs/{config.data.dataset}-{model}-{'+'.join(config.data.source)}-s{config.seed}"


def _synth(args) -> None:
    from vlsa.data.domains import open_reader
    from vlsa.data.synth import generate

    out = Path(args.out)
    count = args.per_domain if args.kind == "fundus" else args.per_vendor
    generate(args.kind, out, count, args.size, args.seed)
    reader = open_reader("fundus" if args.kind == "fundus" else "mms", out)
    print(f"wrote {args.kind} to {out}")
    if args.preview:
        from vlsa.data.synth.preview import preview

        png = preview(reader, out / "preview.png")
        print(f"preview: {png}")


def _verify(args) -> None:
    from vlsa.data.domains import check_domains, open_reader
    from vlsa.data.integrity import can_be_source, verify

    reader = open_reader(args.dataset, args.root, spacing=args.spacing, domain_pattern=args.domain_pattern,
                         agreement=args.agreement, roi_scale=args.roi_scale)
    domains = args.domains or reader.domains()
    check_domains(args.source or [], reader.domains(), "source", reader.root)
    domains += [d for d in args.source or [] if d not in domains]
    # a domain used only as a target has no train cases: reported, not an error
    summaries = verify(reader, domains, allow_empty=("train", "test"), sources=args.source or (), keep_going=True)
    for s in summaries:
        fractions = ", ".join(f"{k} {v:.3f}" for k, v in s.label_fraction.items())
        print(f"{s.domain:>16} {s.split:<5} {s.images:5d} images {s.groups:5d} units  [{fractions or 'no cases'}]")
    sources, tested = can_be_source(summaries), {s.domain for s in summaries if s.split == "test" and s.images}
    for d in domains:
        role = ("source or target" if d in tested else "source only (no test cases)") if d in sources \
            else "target only (no train cases)"
        print(f"{d:>16} can be: {role}")
    for rule in ("label_rule", "roi_rule", "subject_rule"):
        if getattr(reader, rule, None):
            print(f"{rule.replace('_', ' ')}: {getattr(reader, rule)}")
    if hasattr(reader, "summary"):  # the release's own counts (patients, phases, frames)
        print(reader.summary())
    print("ok: dataset passed the integrity check")


def _export(args) -> None:
    from vlsa.data.domains import open_reader
    from vlsa.data.export_nnunet import export_nnunet

    reader = open_reader(args.dataset, args.root, spacing=args.spacing, domain_pattern=args.domain_pattern)
    summary = export_nnunet(reader, args.out, domains=args.domains, splits=args.splits, quiet=False)
    counts = ", ".join(f"{d} {n}" for d, n in summary.domains.items())
    print(f"wrote {summary.cases} cases ({counts}) to {summary.out} (nnU-Net v2 raw format + domains.csv)")


def _train(args) -> None:
    from vlsa.config import load_config
    from vlsa.preflight import check_roots

    if args.devices and args.devices > 1:
        from vlsa.engine.distributed import launch

        argv = list(args.argv)
        i = argv.index("--devices")
        del argv[i : i + 2]
        code = launch(args.devices, argv)
        if code:
            raise SystemExit(code)
        return

    sets = _overrides(args.set)
    if args.resume and args.out is None and args.config is None and not sets:
        raise VlsaError("--resume needs --out RUN_DIR (the run to continue), or the --config/--set it was started with")
    config = None if (args.resume and args.config is None and not sets) else load_config(args.config, sets)
    if config is not None:
        check_roots(config.data)  # before the engine's imports: a mistyped root fails in a second, not ten
    from vlsa.engine.train import train

    out = args.out or default_run_dir(config)
    run = train(config, out, resume=args.resume)
    import torch.distributed as dist

    if dist.is_available() and dist.is_initialized():
        dist.destroy_process_group()
    if os.environ.get("RANK", "0") == "0":
        print(f"run: {run}")


def _evaluate(args) -> None:
    from vlsa.preflight import existing_run

    existing_run(args.run)  # before the engine's imports, as for train's roots
    from vlsa.engine.evaluate import evaluate_run
    from vlsa.engine.threads import use_threads

    use_threads()

    result = evaluate_run(args.run, data=args.data, domains=args.domains, device=args.device, split=args.split,
                          dataset=args.dataset, tta=args.tta)
    if args.report:
        from vlsa.report.html import write_report

        print(f"report: {write_report(args.run, metrics_file=result['file'])}")


def _predict(args) -> None:
    from vlsa.preflight import existing_inputs, existing_run

    existing_inputs(args.input or [])  # the order predict_paths checks them in, before the engine's imports
    existing_run(args.run)
    from vlsa.engine.predict import predict_paths
    from vlsa.engine.threads import use_threads

    use_threads()

    written = predict_paths(args.run, args.input, args.output, overlay=args.overlay, device=args.device,
                            values=args.values, postprocess=args.postprocess, fmt=args.format, series_uid=args.series,
                            tta=args.tta)
    what = "class indices 0, 1, .." if args.values == "index" else "the dataset's own mask values"
    print(f"wrote {len(written)} label file(s) to {args.output} (pixel values: {what})")  # NIfTI and SEG per phase count apart


def _protocol(args) -> None:
    from vlsa.config import load_config
    from vlsa.preflight import check_roots

    config = load_config(args.config, _overrides(args.set))
    check_roots(config.data)  # before the engine's imports, as for train
    from vlsa.engine.protocol import protocol_markdown, run_protocol
    from vlsa.engine.threads import use_threads

    use_threads(config.train.threads)  # training sets it again per run; evaluating a cached run needs it too
    out = args.out or f"runs/protocol-{config.data.dataset}-{config.model.name}-{args.mode}-s{config.seed}"
    result = run_protocol(config, args.mode, out)
    print(protocol_markdown(result))
    print(f"results: {out}/protocol.md")


def _diagnose(args) -> None:
    from vlsa.preflight import existing_run

    existing_run(args.run)
    from vlsa.diagnostics.run import diagnose_run

    diagnose_run(args.run, data=args.data, domains=args.domains, max_pixels=args.max_pixels)
    print(f"diagnostics: {args.run}/diagnostics.md")


def _demo(args) -> None:
    from vlsa.engine.demo import run_demo

    run_demo(args.out, _overrides(args.set))


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="vlsa",
        description="Domain-generalised medical image segmentation with vision-language semantic aggregation.",
        epilog=EPILOG,
    )
    parser.add_argument("--version", action="version", version=f"vlsa {__version__}")
    parser.add_argument("-v", "--verbose", action="store_true", help="log details (warnings are shown anyway)")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    p = sub.add_parser("synth", help="write a synthetic multi-site dataset in the real layout", epilog=EPILOG,
                       description="Write four synthetic sites/vendors in the DoFE (fundus) or M&Ms (cardiac) layout.")
    p.add_argument("kind", choices=["fundus", "cardiac"])
    p.add_argument("--out", required=True, help="output folder")
    p.add_argument("--per-domain", type=int, default=60, help="fundus: images per site (train+test)")
    p.add_argument("--per-vendor", type=int, default=10, help="cardiac: subjects per vendor")
    p.add_argument("--size", type=int, default=128, help="fundus ROI size in pixels")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--preview", action="store_true", help="also write preview.png (rows = sites, label contours)")
    p.set_defaults(func=_synth)

    p = sub.add_parser("verify", help="check a dataset's integrity before use", epilog=EPILOG,
                       description="Load every image/mask pair once and check pairing, sizes, label values, empty "
                                   "domains; say which domains can be sources (have train cases).")
    p.add_argument("--dataset", required=True, choices=DATASETS)
    p.add_argument("--root", required=True)
    p.add_argument("--domains", nargs="+")
    p.add_argument("--source", nargs="+", help="domains that must have train cases (the others may be target only)")
    p.add_argument("--spacing", type=float, default=None, help="mms: in-plane resampling, mm")
    p.add_argument("--domain-pattern", default=None, help="nnunet: regex finding a case's domain in its name")
    p.add_argument("--agreement", type=int, default=2, choices=[1, 2, 3, 4],
                   help="drishti: experts (of 4) who must mark a pixel (default 2: soft map >= 128)")
    p.add_argument("--roi-scale", type=float, default=2.5,
                   help="drishti: ROI side as a multiple of the disc diameter (default 2.5)")
    p.set_defaults(func=_verify)

    p = sub.add_parser("export", help="write a dataset in another tool's format (nnU-Net v2)", epilog=EPILOG,
                       description="Write any dataset vlsa reads (synthetic included) as an nnU-Net v2 raw dataset "
                                   "(imagesTr, labelsTr, dataset.json) with domains.csv (case,domain,split,subject).")
    p.add_argument("format", choices=["nnunet"])
    p.add_argument("--dataset", required=True, choices=DATASETS)
    p.add_argument("--root", required=True, help="the dataset to export")
    p.add_argument("--out", required=True, help="output folder named DatasetXXX_Name (must not exist)")
    p.add_argument("--domains", nargs="+", help="domains to export (default: all)")
    p.add_argument("--splits", nargs="+", default=["train", "test"], choices=["train", "test"])
    p.add_argument("--spacing", type=float, default=None, help="volumes: in-plane resampling, mm")
    p.add_argument("--domain-pattern", default=None, help="nnunet input: regex finding a case's domain in its name")
    p.set_defaults(func=_export)

    p = sub.add_parser("train", help="train a model on the source domain(s)", epilog=EPILOG,
                       description="Train on the config's source domain(s); checkpoints are selected on a source "
                                   "validation split, never on target domains.")
    p.add_argument("--config", help="YAML file, or a packaged config by name (fundus_sdg, drishti_sdg, mms_sdg, "
                                    "acdc_sdg, folder_sdg, demo); defaults if omitted")
    p.add_argument("--set", action="append", metavar="KEY=VALUE",
                   help="override a config key, e.g. train.steps=100 (also read from $VLSA_SET)")
    p.add_argument("--out", help="run directory (default runs/<dataset>-<model>[-<backbone>]-<source>-s<seed>)")
    p.add_argument("--resume", action="store_true",
                   help="continue the run in --out (or the config's default run folder) from checkpoints/last.pt")
    p.add_argument("--devices", type=int, default=None,
                   help="launch N processes on this node with torchrun (DDP: NCCL on GPUs, gloo on CPU)")
    p.add_argument("--threads", type=_positive, metavar="N", help=THREADS_HELP)
    p.set_defaults(func=_train)

    p = sub.add_parser("evaluate", help="per-domain Dice/HD95/ASD of a trained run", epilog=EPILOG,
                       description="Evaluate a run on each domain's test split; writes metrics.json/.csv/.md and overlays.")
    p.add_argument("--run", required=True, help="run directory")
    p.add_argument("--data", help="dataset root (default: the run's)")
    p.add_argument("--dataset", choices=DATASETS, default=None,
                   help="the reader of --data when it is another dataset than the run's (e.g. sunnybrook: DICOM + "
                        "contours for an acdc run); all its domains are unseen targets")
    p.add_argument("--domains", nargs="+", help="domains to evaluate (default: sources and targets); a subset or "
                                                  "--data elsewhere writes metrics_<what>.json, never metrics.json")
    p.add_argument("--split", default="test", choices=["test", "all"],
                   help="test (default): each domain's test split; all: every image of the target domains")
    p.add_argument("--device", default="cpu", choices=["cpu", "cuda", "auto"],
                   help="cpu (default), cuda, or auto (cuda when present)")
    p.add_argument("--tta", choices=TTA_CHOICES, default=None,
                   help=TTA_HELP + "; another than the run's writes metrics_tta-<tta>.json, never metrics.json")
    p.add_argument("--report", action="store_true", help="also write report.html")
    p.add_argument("--threads", type=_positive, metavar="N", help=THREADS_HELP)
    p.set_defaults(func=_evaluate)

    p = sub.add_parser("predict", help="segment image, NIfTI or DICOM files", epilog=EPILOG,
                       description="PNG/JPEG in -> label PNG out (pixel = class index, same size and name); "
                                   "NIfTI in -> NIfTI out with the same shape and affine; a DICOM series (folder or "
                                   "file) in -> a NIfTI per cine phase with the series' geometry (+ a DICOM SEG per "
                                   "phase with --format dicom-seg) and clinical.csv (EDV/ESV/EF, ED/ES by LV volume). "
                                   "A fundus run with a disc locator (RUN/locator) takes whole photographs or crops of "
                                   "any scale and also writes measures.csv (disc centre, areas, vCDR/hCDR/area CDR). "
                                   "The output folder must not overlap the inputs.")
    p.add_argument("--run", required=True)
    p.add_argument("--input", required=True, nargs="+", help="files or folders")
    p.add_argument("--output", required=True, help="output folder")
    p.add_argument("--overlay", action="store_true", help="also write <name>_overlay.png")
    p.add_argument("--values", default="index", choices=["index", "dataset"],
                   help="index (default): pixel = class index 0, 1, ..; dataset: the training data's own mask "
                        "values (classes.yaml values, DoFE 255/128/0)")
    p.add_argument("--format", default="nifti", choices=["nifti", "dicom-seg"],
                   help="DICOM input: nifti (default) writes a NIfTI per phase; dicom-seg also a DICOM SEG per phase")
    p.add_argument("--series", default=None, metavar="UID",
                   help="DICOM folder holding several series: the SeriesInstanceUID to predict")
    p.add_argument("--device", default="cpu", choices=["cpu", "cuda", "auto"],
                   help="cpu (default), cuda, or auto (cuda when present)")
    p.add_argument("--postprocess", default="recorded", choices=["recorded", "on", "off"],
                   help="recorded (default): the run's post-processing decision (postprocess.json, made at the "
                        "end of training), as evaluation scored it; on/off: override it")
    p.add_argument("--tta", choices=TTA_CHOICES, default=None, help=TTA_HELP)
    p.add_argument("--threads", type=_positive, metavar="N", help=THREADS_HELP)
    p.set_defaults(func=_predict)

    p = sub.add_parser("protocol", help="run a DG protocol over all source choices", epilog=EPILOG,
                       description="single-source: train on each domain, evaluate on all; lodo: leave one domain out. "
                                   "Finished runs are cached, so an interrupted protocol resumes.")
    p.add_argument("--config", required=True, help="YAML file or packaged config name (e.g. folder_sdg)")
    p.add_argument("--mode", required=True, choices=["single-source", "lodo"])
    p.add_argument("--set", action="append", metavar="KEY=VALUE")
    p.add_argument("--out", help="output folder")
    p.add_argument("--threads", type=_positive, metavar="N", help=THREADS_HELP)
    p.set_defaults(func=_protocol)

    p = sub.add_parser("diagnose", help="feature dispersion, EM centres and text alignment of a run", epilog=EPILOG,
                       description="Sample pixel features (before/after EM, decoder embeddings) from every domain and "
                                   "report dispersion, silhouette, centroid shift, text alignment, t-SNE and maps.")
    p.add_argument("--run", required=True)
    p.add_argument("--data", help="dataset root (default: the run's)")
    p.add_argument("--domains", nargs="+")
    p.add_argument("--max-pixels", type=int, default=2000, help="sampled pixels per domain (balanced over classes)")
    p.set_defaults(func=_diagnose)

    p = sub.add_parser("demo", help="train and evaluate on synthetic fundus in minutes", epilog=EPILOG,
                       description="Generate the synthetic fundus set if needed, train an ERM U-Net and VLSA "
                                   "on one site, evaluate both on all four, print the table and write a report.html "
                                   "per model.")
    p.add_argument("--out", default="demo_out")
    p.add_argument("--set", action="append", metavar="KEY=VALUE", help="override a demo config key")
    p.set_defaults(func=_demo)
    return parser


class _LevelFormatter(logging.Formatter):
    """`vlsa: warning: ...` for warnings (as the commands' own printed warnings), `vlsa: ...` for the
    progress lines of --verbose: one prefix a user or a grep can rely on."""

    def format(self, record: logging.LogRecord) -> str:
        level = "" if record.levelno < logging.WARNING else record.levelname.lower() + ": "
        return f"vlsa: {level}{record.getMessage()}"


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    argv = sys.argv[1:] if argv is None else list(argv)
    for i, token in enumerate(argv[:-1]):
        if token == "--set" and "=" not in argv[i + 1]:
            print(f"vlsa: error: --set {argv[i + 1]}: expected KEY=VALUE in one word, e.g. "
                  f"--set {argv[i + 1]}={argv[i + 2] if i + 2 < len(argv) and not argv[i + 2].startswith('-') else 'VALUE'}",
                  file=sys.stderr)
            return 2
    args = parser.parse_args(argv)
    args.argv = argv
    from vlsa.engine.threads import request

    request(getattr(args, "threads", None))  # every command: a flag of an earlier in-process call never lingers
    handler = logging.StreamHandler()
    handler.setFormatter(_LevelFormatter())
    logging.basicConfig(level=logging.INFO if args.verbose else logging.WARNING, handlers=[handler])
    try:
        args.func(args)
    except Interrupted as exc:
        print(f"vlsa: {exc}", file=sys.stderr)
        return exc.exit_status
    except VlsaError as exc:
        for line in getattr(exc, "lines", [str(exc)]):  # DataErrors: one line per problem
            print(f"vlsa: error: {line}", file=sys.stderr)
        return 2
    except OSError as exc:  # disk full, read-only folder, ...: one line, not a traceback
        where = exc.filename or ""
        print(f"vlsa: error: {where}{': ' if where else ''}{exc.strerror or exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("vlsa: interrupted", file=sys.stderr)
        return 130
    return 0
