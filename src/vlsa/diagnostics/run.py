"""`vlsa diagnose`: measure feature dispersion, semantic centres and text alignment of a run."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
from tqdm import tqdm

from vlsa.data.domains import check_domains
from vlsa.diagnostics.collect import run_model, sample_pixels
from vlsa.diagnostics.measures import centroid_shift, dispersion_ratio, silhouette, text_alignment
from vlsa.diagnostics.plots import maps_plot, tsne_plot
from vlsa.engine.data import domains_of, open_configured, prepare
from vlsa.engine.evaluate import load_run
from vlsa.utils.atomic import write_json, write_text

LEVELS = {"before_em": "deepest features before EM", "after_em": "deepest features after EM",
          "pixel_embeddings": "decoder pixel embeddings", "decoder": "U-Net last decoder features"}


def _nan_mean(values) -> float:
    values = [v for v in values if v == v]
    return float(np.mean(values)) if values else float("nan")


def diagnose_run(run_dir: str | Path, data=None, domains: list[str] | None = None, max_pixels: int = 2000,
                 images_per_domain: int = 3, tsne_points: int = 1500, quiet: bool = False) -> dict:
    run_dir = Path(run_dir)
    config, spec, model = load_run(run_dir)
    reader = open_configured(config, root=data)
    sources, targets = domains_of(config, reader)
    chosen = domains or [*sources, *targets]
    check_domains(chosen, reader.domains(), "diagnosis", reader.root)
    k = spec.num_classes
    rng = np.random.default_rng(config.seed)
    samples: dict[str, dict[str, tuple[np.ndarray, np.ndarray]]] = {}
    text = []
    for domain in tqdm(chosen, desc="diagnose", unit="domain", disable=quiet):
        prepared = prepare(list(reader.samples(domain, "test")), config, spec)
        outs = run_model(model, prepared.images, config.eval.batch_size)
        for level in LEVELS:
            if level in outs:
                samples.setdefault(level, {})[domain] = sample_pixels(outs[level], prepared.labels, max_pixels, k, rng)
        if "class_embeddings" in outs:
            text.append(outs["class_embeddings"].mean(0))
            _domain_maps(outs, prepared, spec, domain, images_per_domain, run_dir)
    result = {"run": str(run_dir), "source": sources, "levels": {}, "classes": list(spec.label_names),
              "maps": bool(text)}  # EM/text maps exist only for models with class embeddings (VLSA)
    for level, by_domain in samples.items():
        result["levels"][level] = _level_measures(by_domain, sources, spec)
    if text and "pixel_embeddings" in samples:
        t = torch.stack(text).mean(0).numpy()
        result["text_alignment"] = {}
        for domain, (feats, labels) in samples["pixel_embeddings"].items():
            al = text_alignment(feats, labels, t)
            result["text_alignment"][domain] = {
                "nearest_own": {spec.label_names[c]: v for c, v in al["nearest_own"].items()},
                "similarity": {spec.label_names[c]: dict(zip(spec.label_names, map(float, row)))
                               for c, row in enumerate(al["similarity"]) if row[0] == row[0]}}
    _tsne(samples, chosen, spec, run_dir, tsne_points, rng)
    write_json(run_dir / "diagnostics.json", result)
    write_text(run_dir / "diagnostics.md", diagnostics_markdown(result))
    if not quiet:
        print(diagnostics_markdown(result))
    return result


def _level_measures(by_domain: dict, sources: list[str], spec) -> dict:
    names = spec.label_names
    src = [by_domain[d] for d in sources if d in by_domain]
    source_pool = (np.concatenate([f for f, _ in src]), np.concatenate([lab for _, lab in src])) if src else None
    out = {}
    for domain, (feats, labels) in by_domain.items():
        ratio = dispersion_ratio(feats, labels)
        entry = {"role": "source" if domain in sources else "target", "pixels": int(len(labels)),
                 "dispersion": {names[c]: v for c, v in ratio.items()},
                 "dispersion_mean": _nan_mean(ratio.values()),
                 "silhouette": silhouette(feats, labels)}
        if source_pool is not None and domain not in sources:
            shift = centroid_shift(source_pool, (feats, labels))
            entry["centroid_shift"] = {names[c]: v for c, v in shift.items()}
            entry["centroid_shift_mean"] = _nan_mean(shift.values())
        out[domain] = entry
    return out


def _domain_maps(outs, prepared, spec, domain, count, run_dir) -> None:
    n = min(count, len(prepared))
    if n == 0:
        return
    emb = outs["pixel_embeddings"][:n]  # n x E x H x W (unit vectors)
    cls = outs["class_embeddings"][:n]  # n x K x E
    sims = torch.einsum("nehw,nke->nkhw", emb, cls).numpy()
    resp = outs.get("responsibilities")
    argmax = None if resp is None else resp[:n].argmax(1).numpy()
    maps_plot(prepared.display[:n], prepared.labels[:n].numpy(), argmax, sims, spec.label_names, f"{domain}: EM centres and text similarity",
              run_dir / "diagnostics" / f"maps_{domain}.png")


def _tsne(samples, chosen, spec, run_dir, points, rng) -> None:
    panels = {}
    for level in ("before_em", "after_em", "decoder"):
        if level not in samples:
            continue
        feats, labels, doms = [], [], []
        per_domain = max(1, points // len(samples[level]))
        for d, (f, lab) in samples[level].items():
            idx = rng.permutation(len(lab))[:per_domain]
            feats.append(f[idx])
            labels.append(lab[idx])
            doms.append(np.full(len(idx), chosen.index(d)))
        if sum(len(x) for x in labels) >= 10:
            panels[LEVELS[level]] = (np.concatenate(feats), np.concatenate(labels), np.concatenate(doms))
    if panels:
        tsne_plot(panels, spec.label_names, chosen, run_dir / "diagnostics" / "tsne.png")


def diagnostics_markdown(result: dict) -> str:
    lines = [f"# Feature diagnostics: {result['run']}\n",
             "Dispersion ratio: mean distance of a class's features to its centroid / mean distance between "
             "class centroids (per domain; lower = more compact). Silhouette by class (higher = better separated). "
             "Centroid shift: cosine distance of each class centroid from the source domains' centroid.\n"]
    for level, by_domain in result["levels"].items():
        lines.append(f"\n## {LEVELS[level]}\n")
        lines.append("| domain | role | dispersion ratio | silhouette | centroid shift vs source |")
        lines.append("|---|---|---|---|---|")
        for domain, e in by_domain.items():
            shift = e.get("centroid_shift_mean")
            lines.append(f"| {domain} | {e['role']} | {e['dispersion_mean']:.3f} | {e['silhouette']:.3f} | "
                         f"{'–' if shift is None else f'{shift:.4f}'} |")
    if "text_alignment" in result:
        lines.append("\n## Text alignment (decoder pixel embeddings vs class text embeddings)\n")
        names = result["classes"]
        lines.append("| domain | " + " | ".join(f"{n}: nearest text is own" for n in names) + " |")
        lines.append("|---|" + "---|" * len(names))
        for domain, al in result["text_alignment"].items():
            lines.append(f"| {domain} | " + " | ".join(f"{al['nearest_own'].get(n, float('nan')):.3f}" for n in names) + " |")
    pictures = "\nPictures: `diagnostics/tsne.png` (classes by colour, domains by marker)"
    if result.get("maps", True):
        pictures += " and `diagnostics/maps_<domain>.png` (EM argmax centre, per-class text similarity)"
    else:
        pictures += "; no EM/text maps (the model has no EM centres or class text embeddings)"
    lines.append(pictures + ".")
    return "\n".join(lines) + "\n"
