"""Categorical and boolean reference-vs-batch tests on category frequencies."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
from scipy import stats

from .univariate import Outcome, hellinger_distance, js_distance

OTHER = "__other__"  # reference categories beyond max_categories are pooled under this name
MAX_KNOWN = 10000  # names kept to recognise unseen categories


@dataclass
class CategoricalReference:
    """The reference side of one categorical column."""

    categories: list[str]  # most frequent first; may end with OTHER
    counts: np.ndarray  # counts aligned with categories
    known: list[str]  # every reference category name (up to MAX_KNOWN) for the unseen check
    null_rate: float
    n_total: int

    @classmethod
    def build(cls, values: Sequence[str], n_total: int, max_categories: int) -> CategoricalReference:
        uniq, cnt = np.unique(np.asarray(values, dtype=object).astype(str), return_counts=True)
        order = np.lexsort((uniq, -cnt))  # by count desc, then name for a stable order
        uniq, cnt = uniq[order], cnt[order]
        cats, counts = list(uniq[:max_categories]), list(cnt[:max_categories])
        if uniq.size > max_categories:
            cats.append(OTHER)
            counts.append(int(cnt[max_categories:].sum()))
        null_rate = 1.0 - len(values) / n_total if n_total else 0.0
        return cls(
            [str(c) for c in cats],
            np.asarray(counts, dtype=np.int64),
            [str(c) for c in uniq[:MAX_KNOWN]],
            null_rate,
            n_total,
        )


@dataclass
class CategoricalComparison:
    names: list[str]
    ref_counts: np.ndarray
    batch_counts: np.ndarray
    unseen: list[str]
    vanished: list[str]

    def detail(self) -> str:
        parts = []
        if self.unseen:
            parts.append(f"unseen categories: {self.unseen[:20]}" + (" ..." if len(self.unseen) > 20 else ""))
        if self.vanished:
            parts.append(
                f"vanished categories: {self.vanished[:20]}" + (" ..." if len(self.vanished) > 20 else "")
            )
        return "; ".join(parts)


def align(ref: CategoricalReference, values: np.ndarray) -> CategoricalComparison:
    """Counts of both sides over the union of categories; unseen categories kept as their own cells.

    A category is "vanished" when the batch has none of it although the reference share predicts at
    least 5 rows in a batch of this size (rarer categories are absent by chance).
    """
    uniq, cnt = np.unique(values.astype(str), return_counts=True)
    batch = {str(k): int(c) for k, c in zip(uniq.tolist(), cnt.tolist())}
    known = set(ref.known)
    pooled_known = set(ref.known) - set(ref.categories)
    names = list(ref.categories)
    ref_counts = list(ref.counts)
    batch_counts = [0] * len(names)
    index = {c: i for i, c in enumerate(names)}
    unseen: list[str] = []
    for value, c in batch.items():
        if value in index:
            batch_counts[index[value]] += c
        elif value in pooled_known and OTHER in index:
            batch_counts[index[OTHER]] += c
        elif value in known:  # known but pooled without an OTHER cell cannot happen; keep safe
            batch_counts.append(c)
            ref_counts.append(0)
            names.append(value)
        else:
            unseen.append(value)
            names.append(value)
            ref_counts.append(0)
            batch_counts.append(c)
    ref_arr = np.asarray(ref_counts, dtype=np.int64)
    batch_arr = np.asarray(batch_counts, dtype=np.int64)
    n_batch = batch_arr.sum()
    ref_share = ref_arr / max(ref_arr.sum(), 1)
    vanished = [
        n for n, r, b, s in zip(names, ref_arr, batch_arr, ref_share) if r > 0 and b == 0 and s * n_batch >= 5
    ]
    return CategoricalComparison(names, ref_arr, batch_arr, sorted(unseen), vanished)


def total_variation(p: np.ndarray, q: np.ndarray) -> float:
    return float(0.5 * np.abs(p - q).sum())


def chi2_counts(ref_counts: np.ndarray, batch_counts: np.ndarray) -> tuple[float, float]:
    """scipy.stats.chi2_contingency on [batch; reference], the table frouros' ChiSquareTest builds."""
    if ref_counts.size < 2:
        return 0.0, 1.0
    stat, p, _, _ = stats.chi2_contingency(np.vstack([batch_counts, ref_counts]))
    return float(stat), float(p)


def run_categorical_test(name: str, ref: CategoricalReference, values: np.ndarray, config) -> Outcome:
    cmp = align(ref, values)
    p = cmp.ref_counts / cmp.ref_counts.sum()
    q = cmp.batch_counts / cmp.batch_counts.sum()
    # every test carries the chi-squared p-value as its evidence; the effect differs
    stat, pval = chi2_counts(cmp.ref_counts, cmp.batch_counts)
    if name == "chi2":
        return Outcome(stat, pval, total_variation(p, q), cmp.detail())
    if name == "js":
        value = js_distance(p, q)
        return Outcome(value, pval, value, cmp.detail())
    if name == "hellinger":
        value = hellinger_distance(p, q)
        return Outcome(value, pval, value, cmp.detail())
    raise ValueError(f"unknown categorical test {name!r}")
