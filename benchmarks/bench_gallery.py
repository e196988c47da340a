"""AT&T (ORL) faces end to end through the gallery: enroll 1 image per person, identify 9.

40 people x 10 grey 92x112 PGM images (``<data>/att_faces/sN/K.pgm``). Image ``--enroll-index``
(default 1) of each person is enrolled with ``FaceMatcher.enroll`` into a fresh SQLite + FAISS
gallery - the code path of ``slimface gallery enroll`` - and the other 9 are identified with
``FaceMatcher.identify_many`` (``slimface gallery identify``). Prints a table on stderr and
one JSON object on stdout (rank-1 accuracy, how many faces needed the centre-crop fallback,
seconds, commit, seed-free: the split is fixed).

    python benchmarks/bench_gallery.py --model dlib-resnet > att.json

Equivalent CLI, one person shown:

    slimface gallery create att.db --model dlib-resnet
    slimface gallery enroll att.db --name s1 ../shared/data/att_faces/s1/1.pgm --no-face centre
    slimface gallery identify att.db ../shared/data/att_faces/s1/{2..10}.pgm --no-face centre
"""
from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

from slimface._provenance import git_commit


def att_people(root: Path) -> dict[str, list[Path]]:
    from slimface.errors import DataError

    people = {d.name: sorted(d.glob("*.pgm"), key=lambda p: int(p.stem))
              for d in sorted(root.glob("s*"), key=lambda d: int(d.name[1:])) if d.is_dir()}
    if not people:
        raise DataError(f"{root}: no AT&T faces (expected sN/K.pgm)")
    return people


def run(model: str | None, data: str | None, enroll_index: int, top_k: int,
        no_face: str, pad: float, threads: int = 2) -> dict:
    import torch

    import numpy as np

    from slimface.api import FaceMatcher, IdentifyResult
    from slimface.data.roots import data_root

    torch.set_num_threads(threads)
    people = att_people(data_root(data) / "att_faces")
    start = time.perf_counter()
    with tempfile.TemporaryDirectory() as tmp, FaceMatcher(
            model, gallery=Path(tmp) / "att.db", face="largest", no_face=no_face,
            pad=pad) as fm:
        # the steps of FaceMatcher.enroll / identify_many, with each image embedded once
        # so the face-status counts come for free
        order = [(name, k, p) for name, imgs in people.items() for k, p in enumerate(imgs, 1)]
        faces = fm.embedder.embed_files([p for _, _, p in order], multi_face="largest",
                                        no_face=no_face, progress=True)
        gallery = fm.open_gallery(create=True)
        probes, probe_vecs = [], []
        for (name, k, p), f in zip(order, faces):
            if k == enroll_index:
                gallery.enroll(name, f.embedding[None], [str(p)])
            else:
                probes.append((name, p))
                probe_vecs.append(f.embedding)
        results = [IdentifyResult(str(p), r, None) for (_, p), r in
                   zip(probes, gallery.identify(np.stack(probe_vecs), top_k=top_k))]
        statuses = [f.status for f in faces]
        model_name = fm.embedder.model_name
    rank1 = sum(r.candidates[0].name == name for (name, _), r in zip(probes, results))
    in_top = sum(name in [c.name for c in r.candidates] for (name, _), r in zip(probes, results))
    wrong = [{"probe": str(p), "truth": name, "got": r.candidates[0].name,
              "score": round(r.candidates[0].score, 4)}
             for (name, p), r in zip(probes, results) if r.candidates[0].name != name]
    return {"benchmark": "att_faces identify", "model": model_name,
            "enrolled_per_person": 1, "enroll_image": enroll_index, "people": len(people),
            "probes": len(probes), "rank1_accuracy": rank1 / len(probes),
            f"top{top_k}_accuracy": in_top / len(probes),
            "face_status": {s: statuses.count(s) for s in sorted(set(statuses))},
            "no_face_policy": no_face, "pad": pad, "errors": wrong[:20],
            "seconds": round(time.perf_counter() - start, 1), "commit": git_commit()}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", default=None)
    ap.add_argument("--data", default=None)
    ap.add_argument("--enroll-index", type=int, default=1, choices=range(1, 11))
    ap.add_argument("--top", type=int, default=5)
    ap.add_argument("--no-face", choices=("error", "centre"), default="centre")
    ap.add_argument("--pad", type=float, default=0.0)
    ap.add_argument("--threads", type=int, default=2, help="torch threads")
    args = ap.parse_args(argv)
    res = run(args.model, args.data, args.enroll_index, args.top, args.no_face, args.pad,
              args.threads)
    print(f"AT&T: {res['people']} people, enroll image {res['enroll_image']}, "
          f"{res['probes']} probes: rank-1 {res['rank1_accuracy']:.4f}, "
          f"top-{args.top} {res[f'top{args.top}_accuracy']:.4f}, faces {res['face_status']} "
          f"({res['model']}, {res['seconds']} s)", file=sys.stderr)
    json.dump(res, sys.stdout, indent=2)
    sys.stdout.write("\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
