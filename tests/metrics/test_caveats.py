"""metrics.caveats: the warnings said before a metric that misleads (a small-count FID) or takes hours (on a CPU)."""

from metrics.caveats import cpu_cost_warnings, small_count_warnings


def test_small_count_fid_is_warned_of_and_other_metrics_are_not():
    warnings = small_count_warnings(["fid500", "fid999_spine", "fid1k", "kid100", "pr2k3", "label_fidelity200"])
    assert [w.split(" ")[0] for w in warnings] == ["fid500", "fid999_spine"]
    assert "FID is biased upward at small counts" in warnings[0] and "only 500 images" in warnings[0]


def test_hours_of_inception_on_a_cpu_are_warned_of():
    names = ["fid50k_full", "kid7200", "fid7199", "fid50k_spine", "pr50k3"]  # 7,200 images at 2/s = 1 h
    warnings = cpu_cost_warnings(names, on_gpu=False)
    assert [w.split(" ")[0] for w in warnings] == ["fid50k_full"]  # kid7200 is exactly one hour; spine, vgg16: not
    assert "about 7 h per evaluation" in warnings[0]
    assert cpu_cost_warnings(names, on_gpu=True) == []
