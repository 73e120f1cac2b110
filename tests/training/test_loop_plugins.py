"""The plug-in contract: the roles of `LoopPlugins`, each object consulted once under its key, every hook of
`Plugin` for every plug-in."""

import pytest

from training.loop_plugins import (
    LoopPlugins,
    plugin_metadata,
    plugin_states,
    plugin_stop_reason,
    plugin_tick_report,
    restore_plugin_states,
)
from training.plugins import Plugin


class Term(Plugin):
    def __init__(self, name, note=""):
        self.name = name
        self.note = note

    def __call__(self, gen_img, gen_c):
        return gen_img.mean(dim=[1, 2, 3])

    def report_tick(self):
        return self.note

    def snapshot_metadata(self):
        return {self.name: self.note}


class Stateful(Plugin):
    def __init__(self):
        self.state = None

    def state_dict(self):
        return dict(steps=3)

    def load_state_dict(self, state):
        self.state = state


class Stopping(Plugin):
    def __init__(self, reason):
        self.reason = reason

    def stop_reason(self):
        return self.reason


def test_one_object_in_two_roles_is_consulted_once():
    both = Term("step", "NOT-DP")
    named = LoopPlugins(both, both, (Term("clinical", "c"),)).named()
    assert list(named) == ["discriminator_update", "generator_term/clinical"]
    assert plugin_tick_report(named) == " NOT-DP c"
    assert plugin_metadata(named) == {"step": "NOT-DP", "clinical": "c"}


def test_terms_need_distinct_names():
    with pytest.raises(ValueError, match="two plug-ins have the key 'generator_term/x'"):
        LoopPlugins(generator_terms=(Term("x"), Term("x"))).named()


def test_a_plugin_must_derive_from_the_base_class():
    with pytest.raises(TypeError, match="'generator_update' .* must derive from training.plugins.Plugin"):
        LoopPlugins(generator_update=lambda phase, loss, rounds: None)


def test_states_round_trip_and_unclaimed_state_is_refused():
    g = Stateful()
    named = LoopPlugins(generator_update=g, generator_terms=(Term("t"),)).named()
    states = plugin_states(named)
    assert states == {"generator_update": dict(steps=3)}
    restore_plugin_states(states, "ckpt.pt", named)
    assert g.state == dict(steps=3)
    restore_plugin_states({}, "ckpt.pt", named)  # nothing stored: the plug-in is told so
    assert g.state is None
    with pytest.raises(ValueError, match="ckpt.pt: .*'discriminator_update', which this run lacks"):
        restore_plugin_states({"discriminator_update": {}}, "ckpt.pt", named)
    with pytest.raises(ValueError, match="'generator_term/t', which this run cannot restore"):
        restore_plugin_states({"generator_term/t": {}}, "ckpt.pt", named)


def test_the_first_stop_reason_ends_the_run():
    named = LoopPlugins(others=dict(a=Stopping(""), b=Stopping("budget"), c=Stopping("other"))).named()
    assert plugin_stop_reason(named) == "budget"
    assert plugin_stop_reason(LoopPlugins(others=dict(a=Stopping(""))).named()) == ""


def test_combined_plugins_join_terms_and_refuse_two_holders_of_one_role():
    a, b, c = Term("a"), Term("b"), Term("c")
    combined = LoopPlugins.combine(
        [
            LoopPlugins(generator_terms=(a,), fake_labels=len),
            LoopPlugins(generator_terms=(b, c), others=dict(k=Stateful())),
        ]
    )
    assert combined.generator_terms == (a, b, c) and combined.fake_labels is len and list(combined.others) == ["k"]
    with pytest.raises(ValueError, match="both set the training loop's real_sampling"):
        LoopPlugins.combine([LoopPlugins(real_sampling=len), LoopPlugins(real_sampling=len)])
    with pytest.raises(ValueError, match=r"both use the key\(s\) \['k'\]"):
        LoopPlugins.combine([LoopPlugins(others=dict(k=Stateful())), LoopPlugins(others=dict(k=Stateful()))])
