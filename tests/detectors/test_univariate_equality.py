"""Each wrapped detector gives the statistic and p-value frouros (scipy underneath) gives, to 1e-9."""

import numpy as np
import pytest
from frouros.detectors.data_drift import (
    EMD,
    JS,
    PSI,
    AndersonDarlingTest,
    ChiSquareTest,
    CVMTest,
    HellingerDistance,
    KSTest,
    MannWhitneyUTest,
)
from frouros.detectors.data_drift.batch.distance_based.base import BaseDistanceBasedBins
from scipy import stats
from scipy.spatial.distance import jensenshannon

from calmops.detectors.categorical import CategoricalReference, run_categorical_test
from calmops.detectors.config import DriftConfig
from calmops.detectors.univariate import (
    NumericReference,
    bin_counts,
    hellinger_distance,
    psi_value,
    run_numeric_test,
)

CFG = DriftConfig()
SIZES = [(40, 35), (500, 800), (3000, 3000), (12000, 9000)]  # exact and asymptotic KS paths


def _samples(n1, n2, seed, shift=0.1, ties=False):
    rng = np.random.default_rng(seed)
    a = rng.normal(size=n1)
    b = rng.normal(shift, 1.1, size=n2)
    if ties:
        a, b = np.round(a, 1), np.round(b, 1)
    return a, b


def _ours(name, a, b):
    ref = NumericReference.build(a, a.size, CFG.n_bins)
    return run_numeric_test(name, ref, np.sort(b), CFG)


def _frouros(detector, a, b):
    detector.fit(X=a)
    return detector.compare(X=b)[0]


@pytest.mark.parametrize("n1,n2", SIZES)
@pytest.mark.parametrize("ties", [False, True])
def test_ks_equals_frouros(n1, n2, ties):
    a, b = _samples(n1, n2, seed=n1 + n2, ties=ties)
    ours, theirs = _ours("ks", a, b), _frouros(KSTest(), a, b)
    assert ours.statistic == pytest.approx(theirs.statistic, abs=1e-9)
    assert ours.p_value == pytest.approx(theirs.p_value, abs=1e-9)
    assert ours.effect_size == ours.statistic


@pytest.mark.parametrize("n1,n2", SIZES[:3])
def test_cvm_equals_frouros(n1, n2):
    a, b = _samples(n1, n2, seed=7)
    ours, theirs = _ours("cvm", a, b), _frouros(CVMTest(), a, b)
    assert ours.statistic == pytest.approx(theirs.statistic, abs=1e-9)
    assert ours.p_value == pytest.approx(theirs.p_value, abs=1e-9)
    assert ours.effect_size == pytest.approx(np.sqrt(theirs.statistic * (n1 + n2) / (n1 * n2)))


@pytest.mark.parametrize("n1,n2", SIZES[:3])
def test_anderson_equals_frouros(n1, n2):
    a, b = _samples(n1, n2, seed=8)
    ours, theirs = _ours("anderson", a, b), _frouros(AndersonDarlingTest(), a, b)
    assert ours.statistic == pytest.approx(theirs.statistic, abs=1e-9)
    assert ours.p_value == pytest.approx(theirs.p_value, abs=1e-9)
    assert ours.effect_size == pytest.approx(stats.ks_2samp(a, b).statistic, abs=1e-12)


@pytest.mark.parametrize("n1,n2", SIZES)
def test_mannwhitney_equals_frouros(n1, n2):
    a, b = _samples(n1, n2, seed=9)
    ours, theirs = _ours("mannwhitney", a, b), _frouros(MannWhitneyUTest(), a, b)
    assert ours.statistic == pytest.approx(theirs.statistic, abs=1e-9)
    assert ours.p_value == pytest.approx(theirs.p_value, abs=1e-9)
    assert ours.effect_size == pytest.approx(abs(2 * theirs.statistic / (n1 * n2) - 1))


def test_emd_equals_frouros_and_is_normed_by_reference_std():
    a, b = _samples(2000, 1500, seed=10, shift=0.5)
    ours, theirs = _ours("emd", a, b), _frouros(EMD(), a, b)
    assert ours.statistic == pytest.approx(theirs.distance, abs=1e-9)
    assert ours.effect_size == pytest.approx(theirs.distance / a.std(), abs=1e-9)
    assert ours.p_value == pytest.approx(stats.ks_2samp(a, b).pvalue, abs=1e-9)


def test_binned_formulas_equal_frouros_on_frouros_bins():
    """Our Hellinger/PSI formulas equal frouros' on the bins frouros uses (no empty bins)."""
    a, b = _samples(5000, 4000, seed=11)
    p, q = BaseDistanceBasedBins._calculate_bins_values(X_ref=a, X=b, num_bins=10)
    assert (p > 0).all() and (q > 0).all()
    assert hellinger_distance(p, q) == pytest.approx(
        _frouros(HellingerDistance(num_bins=10), a, b).distance, abs=1e-9
    )
    assert psi_value(p, q, epsilon=1e-12) == pytest.approx(
        _frouros(PSI(num_bins=10), a, b).distance, abs=1e-9
    )


def test_binned_tests_on_reference_quantile_bins():
    a, b = _samples(5000, 4000, seed=12, shift=0.3)
    ref = NumericReference.build(a, a.size, CFG.n_bins)
    assert ref.bin_counts.sum() == a.size
    # quantile bins: each holds about a tenth of the reference
    assert np.all(np.abs(ref.bin_counts / a.size - 0.1) < 0.001)
    p = ref.bin_counts / a.size
    qc = bin_counts(np.sort(b), ref.bin_edges)
    q = qc / b.size
    js = _ours("js", a, b)
    assert js.statistic == pytest.approx(jensenshannon(p, q, base=2), abs=1e-12)
    hd = _ours("hellinger", a, b)
    assert hd.statistic == pytest.approx(np.sqrt(0.5 * np.sum((np.sqrt(p) - np.sqrt(q)) ** 2)), abs=1e-12)
    psi = _ours("psi", a, b)
    assert psi.statistic == pytest.approx(np.sum((q - p) * np.log(q / p)), abs=1e-12)
    chi = stats.chi2_contingency(np.vstack([qc, ref.bin_counts]))
    assert js.p_value == pytest.approx(chi.pvalue, abs=1e-12)


def test_psi_of_two_samples_of_the_same_distribution_is_small():
    """STACK.md: frouros PSI gave 2.84 for two N(0,1) samples (empty bin). Ours stays near zero."""
    rng = np.random.default_rng(13)
    a, b = rng.normal(size=3000), rng.normal(size=200)
    psi = _ours("psi", a, b)
    # expected PSI of two same-distribution samples ~ (bins-1)(1/n1+1/n2) = 9*(1/3000+1/200) ~ 0.048
    assert psi.statistic < 0.1


@pytest.mark.parametrize("seed", [1, 2, 3])
def test_chi2_equals_frouros(seed):
    rng = np.random.default_rng(seed)
    a = rng.choice(list("abcde"), size=3000, p=[0.3, 0.3, 0.2, 0.1, 0.1])
    b = rng.choice(list("abcdf"), size=1000, p=[0.25, 0.3, 0.25, 0.15, 0.05])  # "e" vanishes, "f" is new
    ref = CategoricalReference.build(a, a.size, CFG.max_categories)
    ours = run_categorical_test("chi2", ref, b, CFG)
    theirs = _frouros(ChiSquareTest(), a, b)
    assert ours.statistic == pytest.approx(theirs.statistic, abs=1e-9)
    assert ours.p_value == pytest.approx(theirs.p_value, abs=1e-9)
    assert "unseen categories: ['f']" in ours.detail and "vanished categories: ['e']" in ours.detail
    # total variation distance by hand
    cats = list("abcdef")
    pa = np.array([(a == c).mean() for c in cats])
    pb = np.array([(b == c).mean() for c in cats])
    assert ours.effect_size == pytest.approx(0.5 * np.abs(pa - pb).sum(), abs=1e-12)


def test_categorical_js_hellinger_on_frequencies():
    a = np.array(["x"] * 60 + ["y"] * 40)
    b = np.array(["x"] * 30 + ["y"] * 70)
    ref = CategoricalReference.build(a, a.size, CFG.max_categories)
    js = run_categorical_test("js", ref, b, CFG)
    assert js.statistic == pytest.approx(jensenshannon([0.6, 0.4], [0.3, 0.7], base=2), abs=1e-12)
    hd = run_categorical_test("hellinger", ref, b, CFG)
    expected = np.sqrt(0.5 * ((np.sqrt(0.6) - np.sqrt(0.3)) ** 2 + (np.sqrt(0.4) - np.sqrt(0.7)) ** 2))
    assert hd.statistic == pytest.approx(expected, abs=1e-12)


def test_frouros_js_uses_scipy_jensenshannon():
    """Sanity: frouros' JS is scipy's jensenshannon on its own probabilities (natural log)."""
    a, b = _samples(800, 700, seed=14)
    p, q = JS._calculate_probabilities(X_ref=a, X=b, num_bins=10)
    assert _frouros(JS(num_bins=10), a, b).distance == pytest.approx(jensenshannon(p, q), abs=1e-12)
