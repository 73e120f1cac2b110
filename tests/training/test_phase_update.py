"""EveryNthStep: the wrapped rule acts on every n-th call of each phase, and the schedule resumes exactly."""

import pytest

from training.phase_update import EveryNthStep, Phase


class Recorder:
    def __init__(self):
        self.calls = []

    def __call__(self, phase, loss, rounds):
        self.calls.append((phase.name, rounds))


def phase(name: str) -> Phase:
    return Phase(name, module=None, opt=None, interval=1, update=None)


def test_acts_on_every_nth_call_per_phase():
    inner = Recorder()
    step = EveryNthStep(inner, 3)
    for i in range(7):
        step(phase("Gmain"), None, i)
        if i % 4 == 0:  # a lazy phase called every 4th iteration: its own count, so 1 in 3 of its calls
            step(phase("Greg"), None, i)
    assert inner.calls == [("Gmain", 0), ("Greg", 0), ("Gmain", 3), ("Gmain", 6)]


def test_resumed_schedule_continues_the_count():
    whole, first = Recorder(), Recorder()
    reference = EveryNthStep(whole, 2)
    for i in range(5):
        reference(phase("Gboth"), None, i)
    interrupted = EveryNthStep(first, 2)
    for i in range(3):
        interrupted(phase("Gboth"), None, i)
    resumed = EveryNthStep(first, 2)
    resumed.load_state_dict(interrupted.state_dict())
    for i in range(3, 5):
        resumed(phase("Gboth"), None, i)
    assert first.calls == whole.calls == [("Gboth", 0), ("Gboth", 2), ("Gboth", 4)]


def test_other_schedule_or_none_is_refused():
    with pytest.raises(ValueError, match="n=3"):
        EveryNthStep(Recorder(), 3).load_state_dict(EveryNthStep(Recorder(), 2).state_dict())
    with pytest.raises(ValueError, match="none"):
        EveryNthStep(Recorder(), 3).load_state_dict(None)
    with pytest.raises(ValueError, match="n must be >= 1"):
        EveryNthStep(Recorder(), 0)
