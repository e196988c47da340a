"""The main job: the accuracy (Table 2) and size/speed (Table 3) comparison of Zhou et al.
(2018), "Face Recognition Method Based on Quantized Residual Convolutional Neural Networks",
re-measured on this machine for slimface's models.

``build_report`` takes every pretrained model whose file is on this machine (the table in
:mod:`slimface.models.pretrained`: the dlib teacher, the distilled ``slimface-mobile`` and
an int8 ONNX export of it, the product-quantized teacher, the binary students, a fetched
``mobilefacenet-tflite``) and any extra model the caller names, evaluates each on the LFW view-2
protocol, counts parameters, multiply-accumulates and bytes on disk, times each in one run
against the fp32 teacher in the same runtime, and writes ``report.md``, ``report.json`` and
the plots. Nothing in the report is typed in: every number is measured by this run or read
from a file the report names.
"""
from __future__ import annotations

import logging
import os
import platform
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Sequence

import numpy as np
import torch
from torch import nn

from slimface._provenance import describe_cpu, git_commit
from slimface.eval.lfw import Pair
from slimface.eval.run import align_pair_images, evaluate_crops, load_lfw_pairs
from slimface.io.atomic import atomic_write_text
from slimface.models.pretrained import ModelCard, find_card, list_cards

log = logging.getLogger(__name__)

#: The baseline of every speed-up and compression ratio: the card whose role is "teacher".
TEACHER = next(c.name for c in list_cards() if c.role == "teacher")


@dataclass
class Candidate:
    """One row of the report: how to get the model and what file it lives in."""

    label: str
    role: str                           # a card's role (teacher, student, ...), int8 or peer
    load: Callable[[], nn.Module]
    file: Path | None
    runtime: str = "torch"                      # "torch" or "onnx"
    source: str | None = None                   # the model an int8 row was made from


@dataclass(frozen=True)
class ReportSettings:
    """``quick`` keeps the 10-fold protocol but uses ``pairs_per_fold`` pairs of each fold
    (half same, half different) and fewer timing repetitions, for the demo."""

    quick: bool = False
    pairs_per_fold: int = 60
    timing_repeats: int = 20
    threads: int = 2
    batch_sizes: tuple[int, ...] = (1, 32)

    @property
    def repeats(self) -> int:
        return max(3, self.timing_repeats // 4) if self.quick else self.timing_repeats


# --------------------------------------------------------------------------- models

def _loader(spec: str) -> Callable[[], nn.Module]:
    def load() -> nn.Module:
        from slimface.runtime.loader import load_model

        return load_model(spec)

    return load


def _card_label(card: ModelCard) -> str:
    kind = {"teacher": "teacher, fp32", "student": "fp32", "peer": "peer"}
    return f"{card.name} ({kind.get(card.role) or Path(card.file).suffix})"


def _int8_loader(spec: str, path: Path) -> Callable[[], nn.Module]:
    return lambda: _int8_export(spec, path)


def default_candidates(out_dir: Path, extra: Sequence[str] = ()) -> list[Candidate]:
    """Every pretrained model whose file is here (the teacher first, an int8 ONNX row after
    each student), then the models in ``extra`` that are not pretrained-model names.

    A pretrained model named in ``extra`` is reported once, in table order; one that is
    not here is skipped with a log, unless named (its load error then says how to get it).
    """
    named = {card.name for card in map(find_card, extra) if card is not None}
    rows: list[Candidate] = []
    for card in sorted(list_cards(), key=lambda c: c.role != "teacher"):
        path = card.path()
        if path is None and card.name not in named:
            log.log(logging.INFO if card.delivery == "fetched" else logging.WARNING,
                    "%s: model file %s not here; its rows are skipped", card.name, card.file)
            continue
        runtime = "onnx" if card.file.endswith(".onnx") else "torch"
        rows.append(Candidate(_card_label(card), card.role, _loader(card.name), path,
                              runtime=runtime))
        if card.role == "student":
            int8_path = out_dir / "models" / f"{card.name}.int8.onnx"
            rows.append(Candidate(f"{card.name} (int8 ONNX)", "int8",
                                  _int8_loader(card.name, int8_path), int8_path,
                                  runtime="onnx", source=card.name))
    for spec in extra:
        if find_card(spec) is None:
            rows.append(Candidate(f"{spec} (peer)", "peer", _loader(spec),
                                  Path(spec) if Path(spec).exists() else None,
                                  runtime="onnx" if spec.endswith(".onnx") else "torch"))
    return rows


def _calibration_crops(model: nn.Module, n: int = 256) -> np.ndarray:
    """CelebA crops for int8 calibration (never LFW pair images), aligned for ``model``."""
    from slimface.data.calibration import calibration_crops, default_calibration_folder

    return calibration_crops(model, default_calibration_folder(), n=n)


def _int8_export(spec: str, out: Path) -> nn.Module:
    """Export ``spec`` to fp32 ONNX, quantize it statically to int8, load the result.

    A file left by an earlier run is reused only if it was made from the same weights (its
    ``source_fingerprint`` metadata: a retrained model keeps its name) by this version of the
    int8 writer.
    """
    from slimface.runtime.export import (export_onnx, quantize_int8, read_metadata,
                                         written_by_this_version)
    from slimface.runtime.fingerprint import model_fingerprint
    from slimface.runtime.loader import OnnxModel, load_model

    model = load_model(spec)
    fingerprint = model_fingerprint(model)
    if not out.exists() or read_metadata(out).get("source_fingerprint") != fingerprint \
            or not written_by_this_version(out):
        fp32 = out.with_name(out.name.replace(".int8", ".fp32"))
        export_onnx(model, fp32, metadata={"source_fingerprint": fingerprint})
        quantize_int8(fp32, out, _calibration_crops(model))
    return OnnxModel(out)


# --------------------------------------------------------------------------- measuring

def quick_subset(pairs: Sequence[Pair], per_fold: int) -> list[Pair]:
    """The first ``per_fold/2`` same and different pairs of every fold (deterministic)."""
    half = max(1, per_fold // 2)
    kept: list[Pair] = []
    counts: dict[tuple[int, bool], int] = {}
    for p in pairs:
        key = (p.fold, p.same)
        if counts.get(key, 0) < half:
            kept.append(p)
            counts[key] = counts.get(key, 0) + 1
    return kept


def profile_row(model: nn.Module) -> dict[str, Any]:
    """Parameters and MACs of a torch model (``None`` for runtimes we cannot introspect)."""
    from slimface.models.profile import profile_model

    if not any(True for _ in model.parameters()) and not list(model.buffers()):
        return {"params": None, "macs": None}
    try:
        prof = profile_model(model, tuple(model.input_size))
    except Exception as exc:  # noqa: BLE001 - custom inference modules may not trace hooks
        log.info("profile of %s failed (%s)", type(model).__name__, exc)
        return {"params": None, "macs": None}
    return {"params": prof["params"], "macs": prof["macs"]}


def latency(model: nn.Module, batch: int, repeats: int, threads: int) -> float:
    """Median ms per forward of ``batch`` random 0..255 images in the model's faster memory
    layout (:func:`latency_against` without a baseline)."""
    return latency_against(model, None, batch, repeats, threads)[0]


def latency_against(model: nn.Module, baseline: nn.Module | None, batch: int, repeats: int,
                    threads: int) -> tuple[float, float | None]:
    """Median ms per forward of ``model`` and of ``baseline`` (None: none), each in its
    faster memory layout, timed in alternating blocks.

    Torch models are timed in both layouts first and the faster one counts (dense convs take
    oneDNN's fast path only in channels_last on some shapes); every model gets the same
    treatment. The final timing alternates blocks of the two models
    (:func:`slimface.runtime.timing.time_in_blocks`), so a change of machine load between
    the rows of a long report (minutes apart, on a shared machine) hits a row and its
    baseline alike and the ratio stays fair. Pass ONNX Runtime models through
    :func:`not_spinning` first (once: each makes a new session).
    """
    from slimface.runtime.timing import time_in_blocks

    torch.set_num_threads(threads)
    if baseline is None:
        return _fastest_call(model, batch, repeats)[0], None
    fns = {"model": _fastest_call(model, batch, repeats)[1],
           "baseline": _fastest_call(baseline, batch, repeats)[1]}
    with torch.inference_mode():
        times = time_in_blocks(fns, repeats, rounds=5, warmup=1)
    return float(np.median(times["model"])), float(np.median(times["baseline"]))


def not_spinning(model: nn.Module) -> nn.Module:
    """An ONNX Runtime model with its threads' spinning off (a copy; others as they are):
    a spinning pool would steal the cores of the model timed in the next block, as
    :mod:`slimface.runtime.timing` measured, and make ratios to it look better than they
    are."""
    from slimface.runtime.loader import OnnxModel

    if isinstance(model, OnnxModel):
        return OnnxModel(model.path, threads=model.threads, spin=False)
    return model


def _fastest_call(model: nn.Module, batch: int, repeats: int
                  ) -> tuple[float, Callable[[], Any]]:
    """(median ms, a call of ``model`` on ``batch`` random images) in the memory layout
    that timed faster (the model is left in that layout)."""
    from slimface.runtime.timing import time_in_blocks

    layouts = [torch.contiguous_format]
    if any(isinstance(m, nn.Conv2d) for m in model.modules()):
        layouts.append(torch.channels_last)
    h, w = tuple(model.input_size)
    best: tuple[float, Callable[[], Any] | None, Any] = (float("inf"), None, None)
    for layout in layouts:
        x = (torch.rand(batch, 3, h, w) * 255).contiguous(memory_format=layout)
        try:
            moved = model.to(memory_format=layout)
            with torch.inference_mode():
                # 2 untimed runs: one warm-up plus the untimed first call of the block
                ms = float(np.median(time_in_blocks({"m": lambda: moved(x)}, repeats,
                                                    rounds=1, warmup=1)["m"]))
        except RuntimeError as exc:  # custom kernels may refuse a layout
            log.info("latency of %s in %s failed (%s)", type(model).__name__, layout, exc)
            continue
        if ms < best[0]:
            best = (ms, lambda m=moved, x=x: m(x), layout)
    if best[1] is None:
        raise RuntimeError(f"{type(model).__name__} ran in no memory layout")
    model.to(memory_format=best[2])
    return best[0], best[1]


def _onnx_teacher(out_dir: Path) -> nn.Module:
    """The fp32 teacher in ONNX Runtime, spinning off: the like-for-like baseline of ONNX
    rows (only ever timed against them)."""
    from slimface.runtime.export import export_onnx
    from slimface.runtime.loader import OnnxModel, load_model

    # exported afresh every run (seconds): a file from an earlier run may predate a change to
    # the exporter (e.g. how constant pads are written), and this file is every ONNX row's
    # baseline
    path = export_onnx(load_model(TEACHER), out_dir / "models" / "dlib-resnet.fp32.onnx")
    return OnnxModel(path, spin=False)


def measure(candidates: Sequence[Candidate], pairs: Sequence[Pair], out_dir: Path,
            settings: ReportSettings) -> list[dict[str, Any]]:
    """Accuracy, size and speed of every candidate; speed-ups against the teacher in the same
    runtime (torch rows vs torch teacher, ONNX vs ONNX), timed in alternating blocks with
    each row (:func:`latency_against`)."""
    rows: list[dict[str, Any]] = []
    baselines: dict[str, nn.Module] = {}
    for cand in candidates:
        log.info("report: %s", cand.label)
        try:
            model = cand.load()
        except Exception as exc:  # noqa: BLE001 - one broken optional model must not sink the report
            log.warning("skipping %s: %s", cand.label, exc)
            continue
        aligned = align_pair_images(pairs, model, cache=True, progress=True)
        res = evaluate_crops(model, aligned, pairs, progress=True)
        row = {"model": cand.label, "role": cand.role, "runtime": cand.runtime,
               "file": str(cand.file) if cand.file else None,
               "bytes": cand.file.stat().st_size if cand.file and cand.file.exists() else None,
               **profile_row(_float_architecture(cand, model)),
               "accuracy_mean": res["accuracy_mean"], "accuracy_std": res["accuracy_std"],
               "auc": res["auc"], **_readouts(res),
               "n_pairs": len(pairs), "no_face": aligned.count("centre"),
               "scores": res["scores"], "labels": res["labels"]}
        timed = not_spinning(model)
        if cand.role == "teacher":
            baselines.setdefault(cand.runtime, timed)
        elif cand.runtime not in baselines:
            baselines[cand.runtime] = (_onnx_teacher(out_dir) if cand.runtime == "onnx"
                                       else _loader(TEACHER)())
        baseline = None if cand.role == "teacher" else baselines[cand.runtime]
        for b in settings.batch_sizes:
            ms, teacher_ms = latency_against(timed, baseline, b, settings.repeats,
                                             settings.threads)
            teacher_ms = ms if teacher_ms is None else teacher_ms
            row[f"ms_b{b}"] = ms / b
            row[f"teacher_ms_b{b}"] = teacher_ms / b
            row[f"speedup_b{b}"] = teacher_ms / ms
        rows.append(row)
    _add_ratios(rows)
    return rows


def _readouts(res: dict[str, Any]) -> dict[str, Any]:
    """The deployment read-outs a report row carries: all-pairs TAR at FAR 1e-3 and 1e-4,
    rank-1 and DIR at FAR 1e-2 (None where the images cannot resolve them), and counts."""
    ap, ident = res["all_pairs"], res["identification"]
    return {"all_pairs_tar_at_far_1e-3": res["tar_at_far"]["1e-3"],
            "all_pairs_tar_at_far_1e-4": res["tar_at_far"]["1e-4"],
            "rank1": res["rank1"], "rank5": res["rank5"],
            "dir_at_far_1e-2": res["dir_at_far"]["1e-2"],
            "n_images": ap["n_images"], "n_impostor_pairs": ap["n_impostor"],
            "n_gallery": ident["n_gallery"], "n_probes": ident["n_mated_probes"]}


def _float_architecture(cand: Candidate, model: nn.Module) -> nn.Module:
    """The float network a row's params/MACs are counted on: the model itself, or for
    compressed files (.slim, int8 ONNX) the float architecture they were made from, so the
    columns compare networks rather than storage formats (bytes on disk shows the storage)."""
    from slimface.models import create_backbone
    from slimface.runtime.loader import load_model

    if cand.role == "int8" and cand.source is not None:
        return load_model(cand.source)
    if cand.file is not None and cand.file.suffix == ".slim":
        from slimface.runtime.slimfile import read_slim_metadata

        arch = read_slim_metadata(cand.file)["architecture"]
        return create_backbone(arch["backbone"], **{**arch.get("kwargs", {}), "pretrained": False})
    return model if cand.runtime == "torch" else nn.Identity()


def _add_ratios(rows: list[dict[str, Any]]) -> None:
    teacher_bytes = next((r["bytes"] for r in rows if r["role"] == "teacher"), None)
    for r in rows:
        r["compression"] = (teacher_bytes / r["bytes"]
                            if teacher_bytes and r.get("bytes") else None)


# --------------------------------------------------------------------------- writing

def _fmt(v: Any, spec: str) -> str:
    return "–" if v is None else format(v, spec)


def _pct(v: float | None) -> str:
    """A rate in percent; n/a where the images behind it cannot resolve it."""
    return "n/a" if v is None else f"{100 * v:.1f}"


def markdown(rows: Sequence[dict[str, Any]], meta: dict[str, Any]) -> str:
    """Table 2 (accuracy) and Table 3 (size and speed) analogues as Markdown."""
    acc = ["| model | LFW acc % (mean ± std) | AUC | all-pairs TAR@FAR=1e-3 | "
           "all-pairs TAR@FAR=1e-4 | 1:N rank-1 | 1:N DIR@FAR=1e-2 | pairs | no-face crops |",
           "|---|---|---|---|---|---|---|---|---|"]
    for r in rows:
        acc.append(f"| {r['model']} | {100 * r['accuracy_mean']:.2f} ± "
                   f"{100 * r['accuracy_std']:.2f} | {r['auc']:.4f} | "
                   f"{_pct(r['all_pairs_tar_at_far_1e-3'])} | "
                   f"{_pct(r['all_pairs_tar_at_far_1e-4'])} | {_pct(r['rank1'])} | "
                   f"{_pct(r['dir_at_far_1e-2'])} | {r['n_pairs']} | {r['no_face']} |")
    first = rows[0] if rows else {}
    size = ["| model | runtime | params | MACs | bytes on disk | compression vs teacher | "
            "ms/face b1 | speed-up b1 | ms/face b32 | speed-up b32 | file |",
            "|---|---|---|---|---|---|---|---|---|---|---|"]
    for r in rows:
        size.append(
            f"| {r['model']} | {r['runtime']} | {_fmt(r['params'], ',')} | "
            f"{_fmt(r['macs'] and r['macs'] / 1e6, '.0f')}M | {_fmt(r['bytes'], ',')} | "
            f"{_fmt(r['compression'], '.1f')}x | {r['ms_b1']:.2f} | {r['speedup_b1']:.2f}x | "
            f"{r['ms_b32']:.2f} | {r['speedup_b32']:.2f}x | `{r['file'] or '-'}` |")
    return "\n".join([
        "# slimface report", "",
        f"Command: `{meta['command']}`  ", f"Commit: {meta['commit']}; machine: {meta['cpu']}, "
        f"{meta['threads']} threads; {meta['seconds']:.0f} s; "
        f"{'QUICK: ' + str(meta['n_pairs']) + ' of 6000 pairs' if meta['quick'] else 'all 6000 pairs'}"
        " of LFW view 2, 10-fold protocol.", "",
        "## Accuracy (Table 2 analogue)", "",
        "Pair accuracy is the 10-fold protocol on the pairs. The all-pairs and 1:N columns "
        "use the same images: every image scored against every other "
        f"({_fmt(first.get('n_impostor_pairs'), ',')} impostor pairs), and a search where the "
        "first image of each person with two or more is enrolled "
        f"({_fmt(first.get('n_gallery'), ',')} people, {_fmt(first.get('n_probes'), ',')} "
        "probes) and single-image people are impostors. n/a: too few impostors to resolve "
        "that rate (fewer than 10 / FAR).", "", *acc, "",
        "## Size and speed (Table 3 analogue)", "",
        "Speed-ups are against the fp32 dlib teacher in the same runtime (torch rows vs torch "
        "teacher, ONNX rows vs the teacher exported to ONNX), timed in alternating blocks "
        "with each row, so each row's ratio is immune to load changes between rows; the "
        "teacher column is that row's own timing of the teacher. "
        "Params and MACs are those of the float network; bytes on disk show the storage.", "",
        *size, "",
        "![accuracy vs size](acc_vs_size.png) ![accuracy vs latency](acc_vs_latency.png)",
        "", "![ROC](roc.png)", ""])


RUNTIME_MARKERS = {"torch": "o", "onnx": "s"}


def latency_points(rows: Sequence[dict[str, Any]]) -> list[dict[str, Any]]:
    """One point per row at its batch-1 latency, plus the teacher in every runtime a row
    was timed in (each row's baseline), so points are compared within their runtime."""
    teacher = next((r for r in rows if r["role"] == "teacher"), None)
    points = [{"label": r["model"], "x": r.get("ms_b1"), "acc": r["accuracy_mean"],
               "runtime": r["runtime"]} for r in rows]
    if teacher is not None:
        runtimes = sorted({r["runtime"] for r in rows} - {teacher["runtime"]})
        for runtime in runtimes:
            row = next(r for r in rows if r["runtime"] == runtime)
            points.append({"label": f"{TEACHER} (teacher, {runtime})",
                           "x": row["teacher_ms_b1"], "acc": teacher["accuracy_mean"],
                           "runtime": runtime})
    return points


def scatter(path: Path, points: Sequence[dict[str, Any]], x_label: str) -> None:
    """Accuracy against ``x`` (log axis); the marker shape names the runtime."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6, 4), dpi=120)
    for runtime, marker in RUNTIME_MARKERS.items():
        pts = [p for p in points if p["runtime"] == runtime and p.get("x") is not None]
        if pts:
            ax.scatter([p["x"] for p in pts], [100 * p["acc"] for p in pts], marker=marker,
                       label=runtime)
        for p in pts:
            ax.annotate(p["label"], (p["x"], 100 * p["acc"]), fontsize=7, xytext=(4, 4),
                        textcoords="offset points")
    ax.set_xscale("log")
    from matplotlib.ticker import NullFormatter

    ax.xaxis.set_minor_formatter(NullFormatter())  # log-axis minor labels overlap
    ax.set_xlabel(x_label)
    ax.set_ylabel("LFW view-2 accuracy (%)")
    ax.legend(title="runtime", fontsize=7)
    ax.grid(True, alpha=0.3)
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)


def build_report(out_dir: str | os.PathLike[str], data_root: str | None = None,
                 settings: ReportSettings = ReportSettings(), extra: Sequence[str] = (),
                 command: str = "slimface report") -> dict[str, Any]:
    """Run everything and write report.md / report.json / plots into ``out_dir``."""
    from slimface.eval.plots import plot_roc

    start = time.perf_counter()
    out = Path(out_dir)
    (out / "models").mkdir(parents=True, exist_ok=True)
    pairs = load_lfw_pairs(data_root, "view2")
    if settings.quick:
        pairs = quick_subset(pairs, settings.pairs_per_fold)
    rows = measure(default_candidates(out, extra), pairs, out, settings)
    plot_roc(out / "roc.png", {r["model"]: (r["scores"], r["labels"]) for r in rows},
             title=f"LFW view 2 ROC ({len(pairs)} pairs)")
    scatter(out / "acc_vs_size.png", [{"label": r["model"], "x": r.get("bytes"),
                                       "acc": r["accuracy_mean"], "runtime": r["runtime"]}
                                      for r in rows], "bytes on disk")
    scatter(out / "acc_vs_latency.png", latency_points(rows),
            "ms per face, batch 1 (each runtime beside its own teacher)")
    public = [{k: v for k, v in r.items() if k not in ("scores", "labels")} for r in rows]
    meta = {"command": command, "commit": git_commit(), "cpu": describe_cpu()["cpu"],
            "python": platform.python_version(), "torch": torch.__version__,
            "threads": settings.threads, "quick": settings.quick, "n_pairs": len(pairs),
            "seconds": time.perf_counter() - start}
    report = {"meta": meta, "models": public}
    import json

    atomic_write_text(out / "report.json", json.dumps(report, indent=2, default=float) + "\n")
    atomic_write_text(out / "report.md", markdown(public, meta))
    return report
