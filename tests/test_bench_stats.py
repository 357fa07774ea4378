"""The verdict of a method comparison (benchmarks/_common.compare): a difference is stated only when
every seed agrees in sign and a paired t-test gives p < 0.05."""
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks"))

import _common as C  # noqa: E402

N = 360  # digits test images


def acc(*images):
    """Accuracies of seeds 0, 1, ... from counts of correct test images."""
    return {s: k / N for s, k in enumerate(images)}


def test_consistent_and_significant_difference_is_below():
    c = C.compare(acc(340, 335, 338), acc(350, 346, 349), "dense", N)
    assert c["verdict"] == "below dense"
    assert c["p"] < 0.05
    assert c["diff_images"] == pytest.approx(-(10 + 11 + 11) / 3)
    assert c["diff_mean"] == pytest.approx(-32 / 3 / N)
    assert c["mean"] == pytest.approx((340 + 335 + 338) / 3 / N)


def test_consistent_and_significant_difference_is_above():
    assert C.compare(acc(350, 346, 349), acc(340, 335, 338), "ESL", N)["verdict"] == "above ESL"


def test_same_sign_but_large_spread_is_within_noise():
    c = C.compare(acc(349, 330, 348), acc(350, 346, 349), "dense", N)  # -1, -16, -1 images
    assert all(d < 0 for d in c["diffs"]) and c["p"] >= 0.05
    assert c["verdict"] == "within noise"


def test_mixed_signs_are_within_noise_whatever_p():
    c = C.compare(acc(340, 339, 341, 352), acc(350, 350, 350, 350), "dense", N)
    assert c["verdict"] == "within noise"


def test_identical_or_single_seed_is_within_noise():
    same = C.compare(acc(340, 341), acc(340, 341), "dense", N)
    assert same["p"] is None and same["verdict"] == "within noise" and same["diff_images"] == 0
    one = C.compare(acc(300), acc(350), "dense", N)
    assert one["p"] is None and one["verdict"] == "within noise" and one["sd"] == 0.0


def test_constant_difference_is_tested_on_image_counts():
    # -1 image on every seed: tested on the counts, the differences have exactly no spread (the fractions'
    # rounding noise does not decide), every seed agrees, and the t-test's p is 0: "below"
    c = C.compare(acc(339, 344, 347), acc(340, 345, 348), "dense", N)
    assert c["diff_sd"] == pytest.approx(0, abs=1e-12)
    assert c["p"] == 0.0 and c["verdict"] == "below dense"
    assert C.comparison_cells(c)[1:3] == ["-1.0", "<0.001"]


def test_pairs_by_seed_and_needs_a_common_seed():
    a = {0: 0.9, 1: 0.8, 2: 0.7}
    ref = {2: 0.7, 1: 0.8}
    assert C.compare(a, ref)["seeds"] == [1, 2]
    with pytest.raises(ValueError):
        C.compare({5: 0.9}, {0: 0.9})


def test_table_cells_and_formatting():
    c = C.compare(acc(340, 335, 338), acc(350, 346, 349), "dense", N)
    delta, images, p, verdict = C.comparison_cells(c)
    assert delta.startswith("-2.96 ± ") and images == "-10.7" and verdict == "below dense"
    assert C.pm([0.5, 0.5]) == "50.00 ± 0.00"
    assert C.fmt(-1e-9, "+.2f") == "+0.00" and C.fmt(-1e-9, ".1f") == "0.0"
    assert C.comparison_cells(C.compare(acc(300), acc(300)))[1:3] == ["-", "-"]
