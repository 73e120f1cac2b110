"""metrics.metric_names: official names, parametric counts, suffixes, and clear refusals."""

import pytest

from metrics.metric_names import MetricNameError, is_valid_metric, key_part, list_valid_metrics, parse_metric


@pytest.mark.parametrize(
    "name, kind, count, full, perclass, space, nhood, max_real",
    [
        ("fid50k_full", "fid", 50000, True, False, "inception", None, None),
        ("kid50k_full", "kid", 50000, True, False, "inception", None, 1_000_000),
        ("pr50k3_full", "pr", 50000, True, False, "vgg16", 3, 200_000),
        ("is50k", "is", 50000, False, False, "inception", None, 50000),
        ("fid50k", "fid", 50000, False, False, "inception", None, 50000),
        ("pr2k3", "pr", 2000, False, False, "vgg16", 3, 2000),
        ("pr1003", "pr", 100, False, False, "vgg16", 3, 100),
        ("pr50k10_full", "pr", 50000, True, False, "vgg16", 10, 200_000),
        ("fid5k_full", "fid", 5000, True, False, "inception", None, None),
        ("fid2k_perclass", "fid", 2000, False, True, "inception", None, 2000),
        ("kid2k_full_perclass_spine", "kid", 2000, True, True, "spine", None, 1_000_000),
        ("pr2k3_spine", "pr", 2000, False, False, "spine", 3, 2000),
        ("pr50k3_full_inception", "pr", 50000, True, False, "inception", 3, 200_000),
        ("label_fidelity500", "label_fidelity", 500, False, False, "spine", None, 500),
    ],
)
def test_parse(name, kind, count, full, perclass, space, nhood, max_real):
    spec = parse_metric(name)
    assert (spec.kind, spec.count, spec.full, spec.perclass, spec.space, spec.nhood_size, spec.max_real) == (
        kind,
        count,
        full,
        perclass,
        space,
        nhood,
        max_real,
    )


@pytest.mark.parametrize(
    "name, why",
    [
        ("fid50k_ful", "unknown metric"),
        ("ppl2_zend", "unknown metric"),
        ("fid1", "at least 2"),
        ("pr50k0", "neighbourhood size"),
        ("pr33", "neighbourhood size"),
        ("is50k_full", "no _full"),
        ("fid2k_inception", "precision/recall only"),
        ("fid2k_perclass_full", "unknown metric"),
        ("label_fidelity10_spine", "no _full"),
    ],
)
def test_refusals_say_why_and_give_examples(name, why):
    with pytest.raises(MetricNameError, match=why) as info:
        parse_metric(name)
    assert "fid50k_full" in str(info.value)
    assert not is_valid_metric(name)


def test_every_listed_example_is_valid():
    assert all(is_valid_metric(name) for name in list_valid_metrics())


def test_key_part():
    assert key_part("Disc space narrowing") == "disc_space_narrowing" and key_part("No finding") == "no_finding"


def test_class_difference_names():
    spec = parse_metric("class_diff500")
    assert (spec.kind, spec.count, spec.space, spec.full, spec.perclass) == ("class_diff", 500, "pixel", False, False)
    for name in ("class_diff500_full", "class_diff500_spine", "class_diff1"):
        with pytest.raises(MetricNameError):
            parse_metric(name)
