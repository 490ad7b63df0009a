"""Synthetic clinical cohorts: demographics and omics with disease effects, cross-sectional or longitudinal.

Omics features come in co-expression *modules* (a shared latent factor per patient and module). A share
``de_share`` of the features is differentially expressed: in every non-control group their log2 level
moves by ``± effect_size`` times the group's severity (1 for the first non-control group, 2 for the next…).

* ``rnaseq``: counts from a negative binomial (mean from a log-normal baseline, library-size factors,
  gene-wise dispersion);
* ``microarray``: log2 intensities (normal);
* ``proteins``: abundances (log-normal).

:func:`longitudinal` follows the same patients over time steps: groups move by a Markov transition
matrix, each patient keeps its own offsets, and ``module_drift`` shifts whole modules step after step.
The ground truth (differential features, modules, effects) is in ``df.attrs["truth"]``.

>>> df = cohort(100, n_features=20, seed=0)
>>> df.shape, df["group"].value_counts().sort_index().to_dict()
((100, 26), {'control': 50, 'disease': 50})
>>> sorted(df.attrs["truth"]["de"])[:2]
['gene_001', 'gene_002']
"""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np
import pandas as pd

__all__ = ["OMICS", "cohort", "longitudinal"]

OMICS = ("rnaseq", "microarray", "proteins")
_PREFIX = {"rnaseq": "gene", "microarray": "probe", "proteins": "prot"}


class _Design:
    """Feature-level parameters shared by every patient and time step."""

    def __init__(self, rng, omics: str, n_features: int, n_modules: int, de_share: float, effect_size: float):
        if omics not in OMICS:
            raise ValueError(f"unknown omics {omics!r}; valid: {', '.join(OMICS)}")
        if n_features < 1 or not 1 <= n_modules <= n_features:
            raise ValueError("need n_features >= 1 and 1 <= n_modules <= n_features")
        if not 0 <= de_share <= 1:
            raise ValueError(f"de_share must be in [0, 1], got {de_share}")
        self.omics = omics
        width = len(str(n_features))
        self.names = [f"{_PREFIX[omics]}_{i + 1:0{max(3, width)}d}" for i in range(n_features)]
        self.module = np.arange(n_features) % n_modules
        self.loading = rng.uniform(0.3, 0.8, n_features)
        n_de = round(de_share * n_features)
        self.lfc = np.zeros(n_features)
        self.lfc[:n_de] = effect_size * rng.choice([-1.0, 1.0], n_de)
        if omics == "rnaseq":
            self.base = rng.normal(np.log(200), 1.2, n_features)  # natural log of mean count
            self.dispersion = 0.05 + 2.0 / np.exp(self.base)
        elif omics == "microarray":
            self.base = rng.normal(8.0, 1.5, n_features)  # log2 intensity
        else:
            self.base = rng.normal(10.0, 1.0, n_features)  # log2 abundance

    def truth(self) -> dict:
        return {
            "omics": self.omics,
            "de": {n: float(l) for n, l in zip(self.names, self.lfc, strict=True) if l != 0},
            "modules": {n: int(m) for n, m in zip(self.names, self.module, strict=True)},
        }

    def sample(self, rng, severity: np.ndarray, factors: np.ndarray, offsets: np.ndarray,
               size_factor: np.ndarray, extra_lfc: np.ndarray) -> np.ndarray:
        """severity (n,), factors (n, modules), offsets (n, features), size_factor (n,), extra_lfc (features,)."""
        log2_shift = np.outer(severity, self.lfc) + extra_lfc + factors[:, self.module] * self.loading + offsets
        if self.omics == "rnaseq":
            mu = np.exp(self.base + log2_shift * np.log(2)) * size_factor[:, None]
            r = 1.0 / self.dispersion
            return rng.negative_binomial(r, r / (r + mu)).astype(np.int64)
        noise = rng.normal(0, 0.25, log2_shift.shape)
        if self.omics == "microarray":
            return np.round(self.base + log2_shift + noise, 4)
        return np.round(2.0 ** (self.base + log2_shift + noise), 2)


def _groups(groups: Mapping[str, float], control: str | None) -> tuple[list[str], np.ndarray, dict]:
    names = list(groups)
    p = np.asarray([float(groups[g]) for g in names])
    if len(names) < 1 or (p < 0).any() or p.sum() <= 0:
        raise ValueError(f"groups must map names to non-negative shares, got {dict(groups)}")
    control = names[0] if control is None else control
    if control not in names:
        raise ValueError(f"control group {control!r} is not one of {names}")
    others = [g for g in names if g != control]
    severity = {control: 0.0, **{g: float(k + 1) for k, g in enumerate(others)}}
    return names, p / p.sum(), severity


def _counts(p: np.ndarray, n: int) -> np.ndarray:
    exact = p * n
    c = np.floor(exact).astype(int)
    c[np.argsort(exact - c)[::-1][: n - c.sum()]] += 1
    return c


def _demographics(rng, n: int, severity: np.ndarray) -> pd.DataFrame:
    age = np.clip(np.round(rng.normal(52 + 4 * np.minimum(severity, 2), 12)), 18, 95).astype(int)
    sex = rng.choice(np.array(["F", "M"], dtype=object), n)
    bmi = np.round(np.clip(rng.normal(26 + 0.8 * severity, 4), 15, 55), 1)
    smoker = rng.random(n) < 0.18 + 0.05 * np.minimum(severity, 2)
    return pd.DataFrame({"age": age, "sex": sex, "bmi": bmi, "smoker": smoker})


def cohort(
    n_patients: int = 200,
    *,
    seed: int = 0,
    groups: Mapping[str, float] | None = None,
    control: str | None = None,
    omics: str | None = "rnaseq",
    n_features: int = 100,
    n_modules: int = 5,
    de_share: float = 0.2,
    effect_size: float = 1.0,
) -> pd.DataFrame:
    """A cross-sectional cohort: ``patient_id``, ``group``, ``age``, ``sex``, ``bmi``, ``smoker`` and,
    unless ``omics`` is None, ``n_features`` omics columns. Group sizes follow ``groups`` exactly
    (default half ``control``, half ``disease``); the first group (or ``control``) has no effect."""
    if n_patients < 1:
        raise ValueError(f"n_patients must be >= 1, got {n_patients}")
    rng = np.random.default_rng(seed)
    names, p, sev = _groups(groups or {"control": 0.5, "disease": 0.5}, control)
    group = np.repeat(np.asarray(names, dtype=object), _counts(p, n_patients))
    rng.shuffle(group)
    severity = np.asarray([sev[g] for g in group])
    df = pd.DataFrame({"patient_id": [f"P{i + 1:05d}" for i in range(n_patients)], "group": group})
    df = pd.concat([df, _demographics(rng, n_patients, severity)], axis=1)
    truth = {"groups": sev}
    if omics is not None:
        design = _Design(rng, omics, n_features, n_modules, de_share, effect_size)
        factors = rng.normal(0, 1, (n_patients, n_modules))
        offsets = rng.normal(0, 0.2, (n_patients, n_features))
        size = np.exp(rng.normal(0, 0.2, n_patients))
        values = design.sample(rng, severity, factors, offsets, size, np.zeros(n_features))
        df = pd.concat([df, pd.DataFrame(values, columns=design.names)], axis=1)
        truth.update(design.truth())
    df.attrs["truth"] = truth
    return df


def longitudinal(
    n_patients: int = 100,
    n_steps: int = 4,
    *,
    seed: int = 0,
    groups: Mapping[str, float] | None = None,
    control: str | None = None,
    transitions: Mapping[str, Mapping[str, float]] | None = None,
    module_drift: Mapping[int, float] | None = None,
    omics: str | None = "rnaseq",
    n_features: int = 100,
    n_modules: int = 5,
    de_share: float = 0.2,
    effect_size: float = 1.0,
    years_per_step: float = 1.0,
) -> pd.DataFrame:
    """The same patients over ``n_steps`` time steps (long format, a ``time`` column 0, 1, …).

    ``transitions[g][h]`` is the probability of moving from group ``g`` to ``h`` between steps (missing
    rows stay put; default: 10% of controls fall ill each step). ``module_drift[m]`` adds that many log2
    units per step to every feature of module ``m`` for every patient (a drift of the whole module).
    """
    if n_steps < 1:
        raise ValueError(f"n_steps must be >= 1, got {n_steps}")
    rng = np.random.default_rng(seed)
    groups = groups or {"control": 0.5, "disease": 0.5}
    names, p, sev = _groups(groups, control)
    if transitions is None:
        ctrl = names[0] if control is None else control
        others = [g for g in names if g != ctrl]
        transitions = {ctrl: {ctrl: 0.9, others[0]: 0.1}} if others else {}
    matrix = np.eye(len(names))
    for g, row in transitions.items():
        if g not in names or any(h not in names for h in row):
            raise ValueError(f"transitions name unknown groups; groups: {names}")
        i = names.index(g)
        matrix[i] = 0
        for h, q in row.items():
            matrix[i, names.index(h)] = float(q)
        if matrix[i].sum() <= 0 or (matrix[i] < 0).any():
            raise ValueError(f"transition probabilities from {g!r} must be >= 0 and not all zero")
        matrix[i] /= matrix[i].sum()
    drift = dict(module_drift or {})
    if drift and not omics:
        raise ValueError("module_drift shifts omics modules, but omics is None")
    if any(not 0 <= int(m) < n_modules for m in drift):
        raise ValueError(f"module_drift keys are module numbers 0..{n_modules - 1}")

    state = np.repeat(np.arange(len(names)), _counts(p, n_patients))
    rng.shuffle(state)
    base = _demographics(rng, n_patients, np.asarray([sev[names[s]] for s in state]))
    ids = [f"P{i + 1:05d}" for i in range(n_patients)]
    design = _Design(rng, omics, n_features, n_modules, de_share, effect_size) if omics else None
    if design is not None:
        offsets = rng.normal(0, 0.2, (n_patients, n_features))
        size = np.exp(rng.normal(0, 0.2, n_patients))
        patient_factor = rng.normal(0, 1, (n_patients, n_modules))
    frames = []
    for t in range(n_steps):
        if t:
            cum = np.cumsum(matrix[state], axis=1)
            state = np.minimum((rng.random(n_patients)[:, None] > cum).sum(axis=1), len(names) - 1)
        group = np.asarray(names, dtype=object)[state]
        frame = pd.DataFrame({"patient_id": ids, "time": t, "group": group})
        demo = base.copy()
        demo["age"] = demo["age"] + round(t * years_per_step)
        frame = pd.concat([frame, demo], axis=1)
        if design is not None:
            severity = np.asarray([sev[g] for g in group])
            extra = np.zeros(n_features)
            for m, per_step in drift.items():
                extra[design.module == int(m)] += per_step * t
            # A patient's module activity persists over time with some step-to-step variation.
            factors = 0.8 * patient_factor + 0.6 * rng.normal(0, 1, patient_factor.shape)
            values = design.sample(rng, severity, factors, offsets, size, extra)
            frame = pd.concat([frame, pd.DataFrame(values, columns=design.names)], axis=1)
        frames.append(frame)
    out = pd.concat(frames, ignore_index=True)
    truth = {"groups": sev, "transitions": {g: dict(zip(names, matrix[i].tolist(), strict=True))
                                            for i, g in enumerate(names)},
             "module_drift": {int(m): float(v) for m, v in drift.items()}}
    if design is not None:
        truth.update(design.truth())
    out.attrs["truth"] = truth
    return out
