"""CLI: eval/embed/data argument handling, the eval table, data fetch from file:// mirrors."""
from __future__ import annotations

import io
import tarfile
from pathlib import Path

import pytest

from slimface.cli import data as data_cli
from slimface.cli.main import build_parser, main
from slimface.errors import DataError


def test_eval_and_embed_and_data_are_registered():
    parser = build_parser()
    args = parser.parse_args(["eval", "--model", "dlib-resnet", "--benchmark", "lfw",
                              "--json", "/tmp/x.json", "--flip", "sum"])
    assert (args.model, args.benchmark, args.json, args.flip) == ("dlib-resnet", "lfw",
                                                                   "/tmp/x.json", "sum")
    assert parser.parse_args(["embed", "a.jpg", "b.jpg"]).images == ["a.jpg", "b.jpg"]
    assert parser.parse_args(["data", "fetch", "lfw"]).dataset == "lfw"


@pytest.mark.parametrize("argv", [["eval", "--batch", "0"], ["eval", "--benchmark", "x"],
                                  ["eval", "--flip", "mirror"], ["data", "fetch", "celeba"]])
def test_usage_errors_exit_2(argv: list[str]):
    with pytest.raises(SystemExit) as exc:
        build_parser().parse_args(argv)
    assert exc.value.code == 2


def test_eval_table_rows_mark_unresolvable_far():
    from slimface.cli.eval import result_rows

    result = {"model": "m", "benchmark": "lfw", "flip": "none", "accuracy_mean": 0.99,
              "accuracy_std": 0.004, "auc": 0.999, "thresholds": [0.5, 0.51],
              "tar_at_far_details": {"tar_at_far_1e-4": {"tar": 0.9, "n_neg": 3000,
                                                         "below_resolution": True}},
              "n_pairs": 6000, "n_images": 7701, "no_face": 3, "fallback_detector": 40,
              "fallback_detector_name": "retinaface", "seconds": 9.0, "seconds_align": 5.0,
              "seconds_embed": 4.0}
    rows = {r["what"]: r["value"] for r in result_rows(result)}
    assert rows["accuracy"] == "99.00% +- 0.40%"
    assert "below resolution" in rows["TAR @ FAR 1e-4"]
    assert rows["no face (centre crop)"] == 3


def _tgz_with_images(path: Path, folder: str, n: int) -> None:
    with tarfile.open(path, "w:gz") as tar:
        for i in range(n):
            info = tarfile.TarInfo(f"{folder}/P{i}/P{i}_0001.jpg")
            info.size = 3
            tar.addfile(info, io.BytesIO(b"jpg"))


@pytest.fixture()
def mirror(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """Local file:// mirrors: pairs files with their real checksums computed here."""
    src = tmp_path / "mirror"
    src.mkdir()
    remotes = []
    for name in ("pairs.txt", "pairsDevTrain.txt", "pairsDevTest.txt"):
        (src / name).write_text("1\nP0 1 1\nP0 1 P1 1\n")
        checksum = "md5:" + data_cli.file_checksum(src / name, "md5")
        remotes.append(data_cli.Remote(name, ("file:///nonexistent/" + name,
                                              (src / name).as_uri()), checksum))
    _tgz_with_images(src / "lfw-deepfunneled.tgz", "lfw-deepfunneled", 3)
    archive = data_cli.Remote("lfw-deepfunneled.tgz", ((src / "lfw-deepfunneled.tgz").as_uri(),))
    monkeypatch.setattr(data_cli, "PAIRS_FILES", tuple(remotes))
    monkeypatch.setattr(data_cli, "IMAGE_ARCHIVES", {"deepfunneled": (archive,
                                                                      "lfw-deepfunneled")})
    monkeypatch.setattr(data_cli, "LFW_IMAGE_COUNT", 3)
    return src


def test_fetch_uses_next_mirror_and_extracts(mirror: Path, tmp_path: Path):
    dest = tmp_path / "data" / "lfw"
    report = data_cli.fetch_lfw(dest)
    assert report["files"]["pairs.txt"].startswith("file://") and "mirror" in \
        report["files"]["pairs.txt"]
    assert data_cli.count_images(dest / "lfw-deepfunneled") == 3
    assert not (dest / "lfw-deepfunneled.tgz").exists()
    assert sorted(p.name for p in dest.iterdir()) == ["lfw-deepfunneled", "pairs.txt",
                                                      "pairsDevTest.txt", "pairsDevTrain.txt"]
    assert set(data_cli.fetch_lfw(dest)["files"].values()) == {"present"}


def test_fetch_rejects_bad_checksum(mirror: Path, tmp_path: Path,
                                    monkeypatch: pytest.MonkeyPatch):
    bad = data_cli.Remote("pairs.txt", ((mirror / "pairs.txt").as_uri(),), "md5:" + "0" * 32)
    with pytest.raises(DataError, match="checksum mismatch"):
        data_cli.download(bad, tmp_path / "out" / "pairs.txt")
    assert not (tmp_path / "out" / "pairs.txt").exists()
    assert list((tmp_path / "out").iterdir()) == []  # no .part left behind


def test_fetch_offline_says_how_to_fix(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                       capsys: pytest.CaptureFixture[str]):
    offline = data_cli.Remote("pairs.txt", ("http://127.0.0.1:9/pairs.txt",), None)
    monkeypatch.setattr(data_cli, "PAIRS_FILES", (offline,))
    code = main(["data", "fetch", "lfw", "--pairs-only", "--dest", str(tmp_path / "lfw")])
    err = capsys.readouterr().err
    assert code == 1 and "cannot reach pairs.txt" in err and "set SLIMFACE_DATA" in err


def test_data_info_lists_datasets(tmp_path: Path, capsys: pytest.CaptureFixture[str]):
    (tmp_path / "lfw" / "lfw-deepfunneled" / "A").mkdir(parents=True)
    (tmp_path / "lfw" / "lfw-deepfunneled" / "A" / "A_0001.jpg").write_bytes(b"")
    assert main(["data", "info", "--data", str(tmp_path), "--json"]) == 0
    import json

    out = json.loads(capsys.readouterr().out)
    rows = {r["dataset"]: r for r in out["datasets"]}
    assert rows["lfw images"]["files"] == 1 and rows["utkface"]["status"] == "missing"


def test_eval_without_data_is_a_clear_error(tmp_path: Path, capsys: pytest.CaptureFixture[str]):
    code = main(["eval", "--model", "mobilefacenet_050", "--data", str(tmp_path)])
    assert code == 1 and "no LFW found" in capsys.readouterr().err
