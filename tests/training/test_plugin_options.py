"""training.plugin_options: declared conflicts are checked in one place; train.py's plug-ins declare consistent
options, settings and resume rules."""

import pytest

import dnnlib
import train
from training.plugin_options import Conflict, check_conflicts


class Declared:
    def __init__(self, *conflicts):
        self.conflicts = conflicts


def test_a_conflict_applies_only_when_all_its_options_are_on():
    conflict = Conflict(("a", "b"), "--a with --b: no")
    assert conflict.applies(dnnlib.EasyDict(a=0.5, b=True))
    assert not conflict.applies(dnnlib.EasyDict(a=0.0, b=True))  # a weight of 0 is off
    assert not conflict.applies(dnnlib.EasyDict(a=0.5, b=None))
    assert not conflict.applies(dnnlib.EasyDict(a=0.5))
    check_conflicts(dnnlib.EasyDict(a=0.5), [Declared(conflict)])
    with pytest.raises(ValueError, match="^--a with --b: no$"):
        check_conflicts(dnnlib.EasyDict(a=0.5, b=True), [Declared(), Declared(conflict)])


def test_train_py_plugins_declare_distinct_settings_and_their_own_options():
    settings = [plugin.setting for plugin in train.PLUGINS]
    assert len(set(settings)) == len(settings) == 6
    names = [name for plugin in train.PLUGINS for name in plugin.options.names]
    assert len(set(names)) == len(names)  # no option belongs to two plug-ins
    for plugin in train.PLUGINS:
        assert set(plugin.path_options) <= set(plugin.options.names)
        for conflict in plugin.conflicts:  # a conflict names options that exist, one of them the plug-in's own
            assert set(conflict.options) <= set(names) and set(conflict.options) & set(plugin.options.names)
    assert "clinical_loss" in train.PATH_OPTIONS and {"data", "metrics_classifier"} <= set(train.PATH_OPTIONS)
