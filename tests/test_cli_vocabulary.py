"""One CLI vocabulary: every option has help, models are named with ``--model``, batch
sizes with ``--batch``, repetitions with ``--repeats``, metadata with ``--meta KEY=VALUE``;
earlier spellings still parse but show nowhere; results on stdout, logs on stderr."""
from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Iterator

import pytest

from slimface.cli._common import emit_result, parse_meta
from slimface.cli.main import build_parser, main
from slimface.errors import ConfigError

#: Spellings replaced by the shared vocabulary: accepted as hidden aliases, never shown.
OLD_SPELLINGS = {"--models", "--batches", "--batch-size", "--reps", "--pq", "--runtimes",
                 "--multi-face"}
#: Commands whose options have not moved to the shared vocabulary yet: (command, option).
NOT_YET: set[tuple[str, str]] = set()


def walk(parser: argparse.ArgumentParser, path: str = "slimface"
         ) -> Iterator[tuple[str, argparse.ArgumentParser, argparse.Action]]:
    """(command path, parser, action) for every action of every (sub)command."""
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for name, sub in action.choices.items():
                yield from walk(sub, f"{path} {name}")
        else:
            yield path, parser, action


@pytest.fixture(scope="module")
def actions() -> list[tuple[str, argparse.ArgumentParser, argparse.Action]]:
    return list(walk(build_parser()))


def _visible(actions):
    return [(cmd, p, a) for cmd, p, a in actions if a.help is not argparse.SUPPRESS]


def _name(a: argparse.Action) -> str:
    return a.option_strings[-1] if a.option_strings else a.dest


def test_every_visible_option_and_argument_has_help(actions):
    missing = [f"{cmd} {_name(a)}" for cmd, _, a in _visible(actions)
               if not (a.help or "").strip()]
    assert not missing, f"no help text: {missing}"


def test_no_visible_option_uses_an_earlier_spelling(actions):
    shown = [(cmd, flag) for cmd, _, a in _visible(actions) for flag in a.option_strings
             if flag in OLD_SPELLINGS]
    assert set(shown) <= NOT_YET, shown
    parsers = {cmd: p for cmd, p, _ in actions}
    for cmd, parser in parsers.items():
        text = parser.format_help()
        for flag in OLD_SPELLINGS:
            if (cmd, flag) not in NOT_YET:
                assert f"{flag} " not in text and f"{flag}]" not in text, (cmd, flag)


def _names_a_model(a: argparse.Action) -> bool:
    help_text = (a.help or "").lower()
    return (a.metavar == "MODEL" or "registry name" in help_text or "model file" in help_text
            or a.dest in ("model", "models"))


def test_every_option_naming_a_model_is_spelled_model(actions):
    wrong = [f"{cmd} {_name(a)}" for cmd, _, a in _visible(actions)
             if _names_a_model(a) and a.option_strings != ["--model"]]
    assert not wrong, f"models are named with --model: {wrong}"


def test_batch_sizes_and_repeats_have_one_spelling_each(actions):
    for cmd, _, a in _visible(actions):
        for flag in a.option_strings:
            if "batch" in flag and (cmd, flag) not in NOT_YET:
                assert flag == "--batch", (cmd, flag)
            if "rep" in flag:
                assert flag == "--repeats", (cmd, flag)


def test_meta_is_key_value_everywhere(actions):
    metas = [(cmd, a) for cmd, _, a in _visible(actions) if "--meta" in a.option_strings]
    assert metas
    for cmd, a in metas:
        if (cmd, "--meta") not in NOT_YET:
            assert a.metavar == "KEY=VALUE" and a.default == [], cmd


@pytest.mark.parametrize("argv, dest, value", [
    (["bench", "models", "--models", "a", "b"], "models", ["a", "b"]),
    (["bench", "models", "--batches", "4", "--runtimes", "torch"], "batch", [4]),
    (["bench", "kernels", "--reps", "3"], "repeats", 3),
    (["bench", "kernels", "--models", "mobilefacenet"], "models", ["mobilefacenet"]),
    (["bench", "train", "--batch-size", "2", "4"], "batch", [2, 4]),
    (["bench", "int8", "--batches", "1"], "batch", [1]),
    (["bench", "pq", "--pq", "m.slim"], "model", "m.slim"),
    (["eval", "--batch-size", "8"], "batch", 8),
    (["info", "m.slim"], "model", "m.slim"),
    (["import", "m.tflite", "--out", "m.slim"], "model", "m.tflite"),
    (["models", "fetch", "mobilefacenet-tflite"], "model", "mobilefacenet-tflite"),
    (["align", "a", "b", "--multi-face", "central"], "face", "central"),
])
def test_earlier_spellings_still_parse(argv, dest, value):
    assert getattr(build_parser().parse_args(argv), dest) == value


def test_several_values_after_one_flag_or_over_repeated_flags():
    parse = build_parser().parse_args
    one = parse(["bench", "models", "--model", "a", "b", "--batch", "1", "8"])
    repeated = parse(["bench", "models", "--model", "a", "--model", "b",
                      "--batch", "1", "--batch", "8"])
    assert (one.models, one.batch) == (repeated.models, repeated.batch) == (["a", "b"], [1, 8])
    default = parse(["bench", "models"])
    assert default.models == ["dlib-resnet", "slimface-mobile"] and default.batch == [1, 32]
    assert parse(["report", "--model", "x.slim"]).model == ["x.slim"]
    assert parse(["report"]).model == []


def test_a_required_model_shows_as_required_in_usage(actions):
    usage = {cmd: p.format_usage() for cmd, p, _ in actions}
    for cmd in ("slimface info", "slimface import", "slimface models fetch",
                "slimface compress quantize"):
        assert "--model MODEL" in usage[cmd] and "[--model MODEL]" not in usage[cmd], cmd


@pytest.mark.parametrize("argv", [["info"], ["info", "a.slim", "--model", "b.slim"],
                                  ["bench", "models", "--batch", "0"]])
def test_a_missing_or_doubled_model_is_a_usage_error(argv, capsys):
    with pytest.raises(SystemExit) as exc:
        build_parser().parse_args(argv)
    assert exc.value.code == 2


def test_meta_takes_key_value_and_the_earlier_json_object():
    assert parse_meta(["team=a", "note=x=y", '{"lfw": "99.1"}']) == {
        "team": "a", "note": "x=y", "lfw": "99.1"}
    for bad in (["team"], ["=a"], ["{not json"], ["[1, 2]"]):
        with pytest.raises(ConfigError, match="--meta"):
            parse_meta(bad)


@pytest.mark.parametrize("json_dest", [None, "-", "file"])
def test_results_on_stdout_unless_stdout_carries_the_json(json_dest, tmp_path: Path, capsys):
    dest = str(tmp_path / "r.json") if json_dest == "file" else json_dest
    emit_result(dest, {"a": 1}, "the table", None, "a summary")
    out, err = capsys.readouterr()
    human = "the table\na summary\n"
    if json_dest == "-":
        assert json.loads(out) == {"a": 1} and err == human
    else:
        assert out == human and err == ""
    if json_dest == "file":
        assert json.loads(Path(dest).read_text()) == {"a": 1}


@pytest.mark.parametrize("argv", [[], ["bench"], ["compress"], ["data"], ["gallery"]])
def test_a_group_without_its_subcommand_prints_help_to_stderr_and_exits_2(argv, capsys):
    assert main(argv) == 2
    out, err = capsys.readouterr()
    assert out == "" and err.startswith("usage: slimface")


def test_data_info_prints_its_table_on_stdout(tmp_path: Path, capsys):
    assert main(["data", "info", "--data", str(tmp_path)]) == 0
    out, err = capsys.readouterr()
    assert "lfw images" in out and "data root" in out and err == ""
    assert main(["data", "info", "--data", str(tmp_path), "--json"]) == 0
    out, err = capsys.readouterr()
    assert json.loads(out)["datasets"] and "lfw images" in err


def test_info_prints_its_table_on_stdout_and_takes_the_file_either_way(capsys):
    from slimface.models.weights import shipped_file

    path = str(shipped_file("q_face_resnet_small.slim"))
    assert main(["info", "--model", path]) == 0
    out, err = capsys.readouterr()
    assert "by kind" in out and "whole file" in out and err == ""
    assert main(["info", path, "--json"]) == 0
    out, err = capsys.readouterr()
    assert json.loads(out)["file"] == path and "by kind" in err
