"""The table of pretrained models: one card per model, a file behind every card, every name
loadable with ``--model``, and ``slimface models`` / ``models show`` printing the cards."""
from __future__ import annotations

import dataclasses
import hashlib
import json

import pytest
import torch

from slimface.align.templates import get_template
from slimface.cli.main import main
from slimface.errors import ModelError, UnknownNameError
from slimface.models import BACKBONES
from slimface.models import pretrained
from slimface.models.pretrained import ModelCard, find_card, get_card, list_cards
from slimface.runtime.loader import load_model

CARDS = list_cards()
NAMES = [c.name for c in CARDS]


def _here(card: ModelCard):
    path = card.path()
    if path is None:
        if card.delivery == "shipped":
            pytest.fail(f"{card.name}: shipped file {card.file} is missing")
        pytest.skip(f"{card.name}: {card.file} not on this machine ({card.delivery})")
    return path


def test_names_are_unique_however_spelled():
    keys = [n.lower().replace("_", "-") for n in NAMES]
    assert len(set(keys)) == len(keys)


def test_a_card_shadows_an_architecture_only_when_it_builds_with_it():
    for card in CARDS:
        if card.name in BACKBONES:
            assert BACKBONES.get(card.name) is BACKBONES.get(card.factory or ""), card.name


@pytest.mark.parametrize("card", CARDS, ids=NAMES)
def test_every_card_is_complete(card: ModelCard):
    for field in ("summary", "source", "training_data", "licence", "file", "sha256"):
        assert getattr(card, field).strip(), (card.name, field)
    assert len(card.sha256) == 64 and card.size_bytes > 0 and card.embedding_dim > 0
    assert card.architecture in BACKBONES
    assert get_template(card.template).size == card.input_size
    assert card.factory is None or card.factory in BACKBONES
    assert (card.fetch is not None) == (card.delivery == "fetched")
    if card.lfw is not None:
        assert card.lfw.command.startswith("slimface ") and card.lfw.recorded_in
        assert 0 < card.lfw.accuracy_pct <= 100


@pytest.mark.parametrize("card", CARDS, ids=NAMES)
def test_every_card_file_is_here_with_its_size_and_checksum(card: ModelCard):
    path = _here(card)
    assert path.name == card.file and path.stat().st_size == card.size_bytes
    assert hashlib.sha256(path.read_bytes()).hexdigest() == card.sha256


@pytest.mark.parametrize("card", CARDS, ids=NAMES)
def test_a_card_survives_json(card: ModelCard):
    assert ModelCard.from_dict(json.loads(json.dumps(card.to_dict()))) == card


def test_a_card_with_an_unknown_key_is_refused():
    with pytest.raises(ValueError, match="unknown model card keys.*colour"):
        ModelCard.from_dict({**CARDS[0].to_dict(), "colour": "red"})


@pytest.mark.parametrize("card", CARDS, ids=NAMES)
def test_every_name_loads_with_the_cards_template_and_size(card: ModelCard):
    _here(card)
    spellings = {card.name, card.name.replace("-", "_")}
    for spelling in spellings:
        model = load_model(spelling)
        assert model.name == spelling
        assert int(model.embedding_dim) == card.embedding_dim
        assert get_template(model.template).name == get_template(card.template).name
        assert tuple(model.input_size) == card.input_size
    with torch.no_grad():
        emb = model(torch.full((1, 3, *card.input_size), 128.0))
    assert emb.shape == (1, card.embedding_dim) and torch.isfinite(emb).all()


def test_a_new_card_and_its_file_are_all_a_model_needs(monkeypatch):
    # a card without a factory is loaded from its file: here a student .safetensors
    card = dataclasses.replace(get_card("slimface-mobile"), name="slimface-mobile-copy",
                               factory=None)
    monkeypatch.setitem(pretrained._BY_KEY, "slimface-mobile-copy", card)
    x = torch.rand(2, 3, 112, 112, generator=torch.Generator().manual_seed(0)) * 255
    with torch.no_grad():
        copy, shipped = load_model("slimface-mobile-copy")(x), load_model("slimface-mobile")(x)
    assert torch.equal(copy, shipped)


def test_an_unknown_name_lists_close_matches_and_every_pretrained_model():
    with pytest.raises(UnknownNameError, match="did you mean slimface-mobile") as exc:
        load_model("slimface-mobil")
    assert all(name in str(exc.value) for name in NAMES)
    assert "architectures: " in str(exc.value) and "slimnet_s2" in str(exc.value)
    with pytest.raises(UnknownNameError, match="known: " + ", ".join(NAMES)):
        get_card("no-such-model")


def test_a_missing_fetched_file_says_how_to_fetch_it(tmp_path, monkeypatch):
    monkeypatch.setattr(pretrained, "pretrained_path", lambda entry: tmp_path / "none.tflite")
    card = find_card("mobilefacenet-tflite")
    assert card is not None and card.path() is None
    with pytest.raises(ModelError, match="slimface models fetch --model mobilefacenet-tflite"):
        card.require_path()


def test_models_json_lists_every_card_first_and_round_trips(capsys, monkeypatch):
    from slimface.cli import models as models_cli

    monkeypatch.setattr(models_cli, "model_rows", lambda classes: [])  # architectures: slow
    assert main(["models", "--json"]) == 0
    out, err = capsys.readouterr()
    listed = json.loads(out)["pretrained"]
    assert [ModelCard.from_dict(entry) for entry in listed] == CARDS
    assert all(e["path"] is None or e["path"].endswith(e["file"]) for e in listed)
    assert err.startswith("pretrained models") and "architectures" in err


@pytest.mark.parametrize("name", NAMES)
def test_models_show_prints_one_card(name, capsys):
    assert main(["models", "show", "--model", name.replace("-", "_")]) == 0
    out, err = capsys.readouterr()
    card = get_card(name)
    assert out.startswith(name) and card.sha256 in out and card.licence in out and err == ""
    assert main(["models", "show", "--model", name, "--json"]) == 0
    assert ModelCard.from_dict(json.loads(capsys.readouterr().out)) == card


def test_models_show_of_an_unknown_name_fails_listing_the_names(capsys):
    assert main(["models", "show", "--model", "nope"]) == 1
    err = capsys.readouterr().err
    assert "unknown pretrained model 'nope'" in err and "slimface-mobile" in err


def test_fetch_of_a_shipped_model_says_there_is_nothing_to_fetch(capsys):
    assert main(["models", "fetch", "--model", "dlib-resnet-pq15"]) == 1
    assert "nothing to fetch" in capsys.readouterr().err


def test_a_model_named_or_given_as_its_file_shares_one_threshold_entry():
    from slimface.gallery.thresholds import table_key

    assert table_key("q-face-resnet-small") == table_key("q_face_resnet_small.slim")
    assert table_key("dlib-resnet") == table_key("dlib_resnet")
