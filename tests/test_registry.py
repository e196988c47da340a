import pytest

from slimface._registry import Registry
from slimface.errors import UnknownNameError


def make_registry() -> Registry:
    reg: Registry = Registry("widget")

    @reg.register
    def small_widget(width: int = 1, tag: str | None = None):
        return ("small", width, tag)

    @reg.register(name="big-widget", aliases=("large",))
    def _big(width: int = 2):
        return ("big", width)

    return reg


def test_dash_and_underscore_name_the_same_entry():
    reg = make_registry()
    assert reg.create("small-widget") == ("small", 1, None)
    assert reg.create("BIG_WIDGET") == ("big", 2)
    assert reg.create("large", width=5) == ("big", 5)


def test_none_kwargs_fall_back_to_defaults_and_tag_is_passed():
    reg = make_registry()
    assert reg.create("small_widget.v2", width=None) == ("small", 1, "v2")


def test_unknown_name_suggests_close_matches():
    reg = make_registry()
    with pytest.raises(UnknownNameError, match="did you mean small_widget"):
        reg.create("smal_widget")


def test_registering_twice_warns():
    reg = make_registry()
    with pytest.warns(UserWarning, match="registered twice"):
        reg.register(lambda: 0, name="small_widget")


def test_hidden_alias_resolves_but_is_never_listed_or_suggested():
    reg: Registry = Registry("widget")

    @reg.register(hidden_aliases=("old_widget",))
    def new_widget():
        return "new"

    assert reg.create("old-widget") == "new" and "old_widget" in reg
    assert reg.names() == ["new_widget"]
    with pytest.raises(UnknownNameError) as err:
        reg.create("old_widgit")
    assert "old_widget" not in str(err.value)
