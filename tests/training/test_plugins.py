"""The plug-in protocol: each object consulted once under its key, every optional method for every plug-in."""

import pytest

from training import plugins


class Term:
    def __init__(self, name, note=""):
        self.name = name
        self.note = note

    def report_tick(self):
        return self.note

    def snapshot_metadata(self):
        return {self.name: self.note}


class Stateful:
    def __init__(self):
        self.state = None

    def state_dict(self):
        return dict(steps=3)

    def load_state_dict(self, state):
        self.state = state


def test_one_object_in_two_roles_is_consulted_once():
    both = Term("step", "NOT-DP")
    named = plugins.named_plugins(both, both, [Term("clinical", "c")])
    assert list(named) == ["discriminator_update", "generator_term/clinical"]
    assert plugins.plugin_tick_report(named) == " NOT-DP c"
    assert plugins.plugin_metadata(named) == {"step": "NOT-DP", "clinical": "c"}


def test_terms_need_distinct_names():
    with pytest.raises(ValueError, match="two generator terms are named 'x'"):
        plugins.named_plugins(None, None, [Term("x"), Term("x")])


def test_states_round_trip_and_unclaimed_state_is_refused():
    g = Stateful()
    named = plugins.named_plugins(generator_update=g, generator_terms=[Term("t")])
    states = plugins.plugin_states(named)
    assert states == {"generator_update": dict(steps=3)}
    plugins.restore_plugin_states(states, "ckpt.pt", named)
    assert g.state == dict(steps=3)
    plugins.restore_plugin_states({}, "ckpt.pt", named)  # nothing stored: the plug-in is told so
    assert g.state is None
    with pytest.raises(ValueError, match="ckpt.pt: .*'discriminator_update', which this run lacks"):
        plugins.restore_plugin_states({"discriminator_update": {}}, "ckpt.pt", named)
    with pytest.raises(ValueError, match="'generator_term/t', which this run cannot restore"):
        plugins.restore_plugin_states({"generator_term/t": {}}, "ckpt.pt", named)


def test_at_most_one_plugin_draws_the_reals():
    class Drawing:
        def index_sampler(self, dataset):
            return ("sampler", dataset)

    assert plugins.index_sampler(plugins.named_plugins(Drawing()), "ds") == ("sampler", "ds")
    assert plugins.index_sampler(plugins.named_plugins(Term("a")), "ds") is None
    with pytest.raises(ValueError, match="at most one"):
        plugins.index_sampler(plugins.named_plugins(Drawing(), Drawing()), "ds")
