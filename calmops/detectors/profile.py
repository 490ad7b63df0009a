"""The reference profile: everything drift detection needs from the champion's training data,
computed once per champion and stored as JSON + .npz (no pickle)."""

from __future__ import annotations

import json
import math
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

from .categorical import CategoricalReference
from .columns import FEATURE_TYPES, categorical_values, infer_feature_types, numeric_values
from .config import DriftConfig
from .multivariate import MultivariateReference
from .univariate import NumericReference

PROFILE_JSON = "profile.json"
PROFILE_NPZ = "profile_arrays.npz"


# ----------------------------------------------------------------------------- profile
@dataclass
class ReferenceProfile:
    feature_types: dict[str, str]
    n_rows: int
    numeric: dict[str, NumericReference] = field(default_factory=dict)  # numeric and datetime columns
    categorical: dict[str, CategoricalReference] = field(default_factory=dict)  # categorical and boolean
    multivariate: object | None = None  # multivariate.MultivariateReference
    predictions: np.ndarray | None = None  # reference model outputs for label-free drift
    confidences: np.ndarray | None = None  # reference max class probabilities
    settings: dict = field(default_factory=dict)  # the config values the profile was built with

    @classmethod
    def build(
        cls,
        reference: pd.DataFrame,
        feature_types: dict[str, str] | None = None,
        config: DriftConfig | None = None,
        *,
        predictions=None,
        confidences=None,
    ) -> ReferenceProfile:
        config = config or DriftConfig()
        feature_types = dict(feature_types or infer_feature_types(reference))
        bad = {c: t for c, t in feature_types.items() if t not in FEATURE_TYPES}
        if bad:
            raise ValueError(f"unknown feature types {bad}; use one of {FEATURE_TYPES}")
        missing = [c for c in feature_types if c not in reference.columns]
        if missing:
            raise ValueError(f"columns {missing} are typed but absent from the reference")
        n = len(reference)
        prof = cls(feature_types=feature_types, n_rows=n)
        prof.settings = {"n_bins": config.n_bins, "max_categories": config.max_categories}
        for col, kind in feature_types.items():
            s = reference[col]
            if kind in ("numeric", "datetime"):
                prof.numeric[col] = NumericReference.build(numeric_values(s, kind), n, config.n_bins)
            else:
                prof.categorical[col] = CategoricalReference.build(
                    categorical_values(s, kind), n, config.max_categories
                )
        if config.multivariate:

            prof.multivariate = MultivariateReference.build(reference, prof, config)
        if predictions is not None:
            prof.predictions = np.asarray(predictions)
        if confidences is not None:
            prof.confidences = np.asarray(confidences, dtype=np.float64)
        return prof

    def null_rate(self, column: str) -> float:
        ref = self.numeric.get(column) or self.categorical.get(column)
        return ref.null_rate

    # ------------------------------------------------------------------ persistence
    def save(self, directory: str | Path) -> None:
        directory = Path(directory)
        directory.mkdir(parents=True, exist_ok=True)
        arrays: dict[str, np.ndarray] = {}
        meta: dict = {
            "format": "calmops.reference_profile",
            "version": 1,
            "feature_types": self.feature_types,
            "n_rows": self.n_rows,
            "settings": self.settings,
            "numeric": {},
            "categorical": {},
        }
        for i, (col, ref) in enumerate(self.numeric.items()):
            arrays[f"num{i}_sorted"] = ref.sorted_values
            arrays[f"num{i}_edges"] = ref.bin_edges
            arrays[f"num{i}_counts"] = ref.bin_counts
            meta["numeric"][col] = {
                "key": f"num{i}",
                "mean": _f(ref.mean),
                "std": _f(ref.std),
                "null_rate": ref.null_rate,
                "n_total": ref.n_total,
            }
        for i, (col, ref) in enumerate(self.categorical.items()):
            arrays[f"cat{i}_counts"] = ref.counts
            meta["categorical"][col] = {
                "categories": ref.categories,
                "known": ref.known,
                "null_rate": ref.null_rate,
                "n_total": ref.n_total,
                "key": f"cat{i}",
            }
        if self.predictions is not None:
            if self.predictions.dtype.kind in "OUS":
                meta["predictions_text"] = [str(v) for v in self.predictions]
            else:
                arrays["predictions"] = self.predictions
        if self.confidences is not None:
            arrays["confidences"] = self.confidences
        if self.multivariate is not None:
            meta["multivariate"] = self.multivariate.save_into(arrays)
        (directory / PROFILE_JSON).write_text(json.dumps(meta, indent=1, allow_nan=False))
        np.savez_compressed(directory / PROFILE_NPZ, **arrays)

    @classmethod
    def load(cls, directory: str | Path) -> ReferenceProfile:
        directory = Path(directory)
        meta = json.loads((directory / PROFILE_JSON).read_text())
        if meta.get("format") != "calmops.reference_profile":
            raise ValueError(f"{directory} does not hold a CalmOps reference profile")
        with np.load(directory / PROFILE_NPZ, allow_pickle=False) as npz:
            arrays = {k: npz[k] for k in npz.files}
        prof = cls(
            feature_types=meta["feature_types"], n_rows=meta["n_rows"], settings=meta.get("settings", {})
        )
        for col, m in meta["numeric"].items():
            k = m["key"]
            prof.numeric[col] = NumericReference(
                arrays[f"{k}_sorted"],
                arrays[f"{k}_edges"],
                arrays[f"{k}_counts"],
                _unf(m["mean"]),
                _unf(m["std"]),
                m["null_rate"],
                m["n_total"],
            )
        for col, m in meta["categorical"].items():
            prof.categorical[col] = CategoricalReference(
                m["categories"], arrays[f"{m['key']}_counts"], m["known"], m["null_rate"], m["n_total"]
            )
        if "predictions" in arrays:
            prof.predictions = arrays["predictions"]
        elif "predictions_text" in meta:
            prof.predictions = np.asarray(meta["predictions_text"], dtype=object)
        if "confidences" in arrays:
            prof.confidences = arrays["confidences"]
        if "multivariate" in meta:

            prof.multivariate = MultivariateReference.load_from(meta["multivariate"], arrays)
        return prof


def _f(x: float) -> float | None:
    return None if x is None or not math.isfinite(x) else float(x)


def _unf(x: float | None) -> float:
    return math.nan if x is None else float(x)
