"""Block steps: split a batch by its block column, drift of each block (against the reference and between
blocks), per-block metrics, the evaluation blocks, and the block-wise model (first fit, selective refit).

A block is the value of the spec's ``block_column`` (a month, a hospital, a machine). Blocks are ordered by
the sort order of their values, so "the newest block" is the last one. The block column routes rows to
their block's model; it is never a feature a model learns from nor a column whose drift is tested.
"""

from __future__ import annotations

import copy
import math
import re
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd

from calmops.core import registry
from calmops.core.blockwise import BlockwiseEstimator
from calmops.core.features import drift_types, make_model
from calmops.core.metrics import evaluate
from calmops.core.names import block_name
from calmops.core.spec import PipelineSpec
from calmops.core.verdict import BlockDrift, PerformanceSignal
from calmops.detectors import DriftReport, ReferenceProfile, compare
from calmops.detectors.policy import adjust_pvalues, aggregate, is_drift
from calmops.tasks import BadInput, step
from calmops.tasks.drift.performance import performance_drift
from calmops.tasks.evaluate import Split, holdout_split

#: Above this many blocks in one file the between-block matrix (quadratic in blocks) is not computed.
MATRIX_MAX_BLOCKS = 40


# -- settings -----------------------------------------------------------------------------


@dataclass
class BlockSettings:
    """How a block pipeline evaluates and routes (spec key ``blocks``; defaults when the spec has none).

    ``evaluation``: ``"newest"`` (hold out the newest block), ``"rows"`` (hold out rows of every block, like
    the stream kind) or a list of block names to hold out. ``unseen``: where rows of a block without a model
    of its own go (``"global"`` or ``"vote"``). ``min_block_rows``: fewest rows a block needs for its own model.
    """

    evaluation: str | list[str] = "newest"
    unseen: str = "global"
    min_block_rows: int = 30


def block_settings(spec: PipelineSpec) -> BlockSettings:
    """The spec's ``blocks`` settings."""
    return BlockSettings(**spec.blocks.model_dump())


# -- blocks of a batch --------------------------------------------------------------------


@dataclass
class Block:
    name: str            # the value as text ("3" for 3.0): used in reports and metric names
    value: Any           # the value as the model sees it (after type coercion)
    rows: np.ndarray     # row positions in the batch


def metric_key(name: str) -> str:
    """A block name usable inside an MLflow metric name."""
    return re.sub(r"[^A-Za-z0-9_.\-]", "_", name) or "_"


def split_blocks(values: pd.Series) -> list[Block]:
    """One Block per distinct value, in the sort order of the values (the last is the newest)."""
    missing = values.isna()
    if missing.any():
        raise BadInput(f"block column '{values.name}' has {int(missing.sum())} missing value(s); "
                       "every row must name its block")
    array = values.to_numpy()
    out = []
    for value in sorted(pd.unique(array)):
        out.append(Block(block_name(value), value, np.flatnonzero(array == value)))
    return out


def evaluation_split(blocks: list[Block], settings: BlockSettings, y: pd.Series, spec: PipelineSpec,
                     task: str, seed: int) -> tuple[Split, list[str], str]:
    """Rows to hold out for champion/challenger scoring: whole blocks (default: the newest), or rows.

    Returns the split, the evaluation block names, and a plain-words note of how it was chosen.
    Whole-block evaluation needs at least one other block to train on; otherwise rows are held out.
    """
    wanted = settings.evaluation
    chosen: list[Block] = []
    why = ""
    if wanted == "newest":
        # the newest block, plus the next newest while they are fewer rows than the minimum holdout;
        # the oldest block always stays to train on
        for block in reversed(blocks[1:]):
            chosen.append(block)
            if sum(b.rows.size for b in chosen) >= spec.evaluation.min_holdout_rows:
                break
        why = "newest block held out" if len(chosen) == 1 else "newest blocks held out (the newest alone is small)"
        if not chosen:
            why = "the file has a single block"
    elif isinstance(wanted, (list, tuple)):
        names = {str(n) for n in wanted}
        chosen = [b for b in blocks if b.name in names]
        why = "evaluation blocks held out"
        if not chosen:
            why = f"none of the evaluation blocks {sorted(names)} is in this file"
        elif len(chosen) == len(blocks):
            why = "every block of the file is an evaluation block"
    if chosen and len(chosen) < len(blocks):
        hold = np.sort(np.concatenate([b.rows for b in chosen]))
        train = np.setdiff1d(np.arange(len(y)), hold)
        return Split(train, hold), [b.name for b in chosen], why
    note = "rows of every block held out" if wanted == "rows" else f"{why}: rows of every block held out instead"
    split = holdout_split(y, spec, task, seed)
    held = set(split.holdout.tolist())
    return split, [b.name for b in blocks if held.intersection(b.rows.tolist())], note


def split_drifted_evaluation(split: Split, blocks: list[Block], drifted: list[str], y: pd.Series,
                             spec: PipelineSpec, task: str, seed: int) -> tuple[Split, list[str]]:
    """Hold out rows of each drifted block that ``split`` holds out whole, and train on the rest of it.

    A block held out whole cannot be refit on the file where it drifted: the challenger would keep the
    champion's model of it, score the same there and be rejected. So ``evaluation.holdout`` of its rows (at
    least ``min_holdout_rows``, stratified for classes, as the stream kind holds out rows) stay held out and
    its other rows join the training rows. A block too small to split this way stays held out whole.
    Returns the new split and the names of the blocks so split.
    """
    held = set(split.holdout.tolist())
    train, hold, split_names = [split.train], [], []
    for block in blocks:
        if block.name not in drifted or not held.issuperset(block.rows.tolist()):
            continue
        try:
            inner = holdout_split(y.iloc[block.rows], spec, task, seed)
        except ValueError:  # too few rows to hold some out and train on the others
            continue
        train.append(block.rows[inner.train])
        hold.append(block.rows[inner.holdout])
        held.difference_update(block.rows.tolist())
        split_names.append(block.name)
    if not split_names:
        return split, []
    holdout = np.sort(np.concatenate([np.fromiter(held, dtype=int, count=len(held)), *hold]))
    return Split(np.sort(np.concatenate(train)), holdout), split_names


# -- drift ---------------------------------------------------------------------------------


def _features(X: pd.DataFrame, spec: PipelineSpec) -> pd.DataFrame:
    return X.drop(columns=[spec.block_column], errors="ignore")


def _feature_types(feature_types: dict[str, str], spec: PipelineSpec) -> dict[str, str]:
    return {c: t for c, t in drift_types(feature_types).items() if c != spec.block_column}


@step("block-drift")
def blocks_vs_reference(reference: pd.DataFrame, profile: ReferenceProfile, X: pd.DataFrame,
                        blocks: list[Block], feature_types: dict[str, str], spec: PipelineSpec) -> dict[str, BlockDrift]:
    """Each block of the batch against the reference: its own rows of the reference when the block was in
    it (at least ``min_samples`` rows), the whole reference profile otherwise.

    With several blocks the blocks are tested at ``alpha / number of blocks`` (Bonferroni across blocks, the
    spec's correction across features within a block), so more blocks do not mean more false alarms.
    """
    config = spec.drift
    if len(blocks) > 1 and config.correction != "none":
        config = config.model_copy(update={"alpha": config.alpha / len(blocks)})
    types = _feature_types(feature_types, spec)
    features = _features(X, spec)
    out: dict[str, BlockDrift] = {}
    for block in blocks:
        own = reference[reference[spec.block_column] == block.value] if spec.block_column in reference else None
        if own is not None and len(own) >= config.min_samples:
            against, basis = ReferenceProfile.build(own, types, config), "block"
        else:
            against, basis = profile, "reference"
        report = compare(against, features.iloc[block.rows], config)
        out[block.name] = BlockDrift(reference=basis, alpha=config.alpha, report=report)
    return out


@step("block-drift-matrix")
def drift_matrix(X: pd.DataFrame, blocks: list[Block], feature_types: dict[str, str],
                 spec: PipelineSpec) -> dict[str, Any]:
    """Between-block drift: every pair of blocks of the batch, each feature tested, p-values corrected
    across the whole matrix (all pairs and features, one family, the spec's correction), then evidence AND
    the minimum effect as for reference drift, aggregated per pair as the spec says.

    Returns ``labels`` and square matrices: ``matrix`` (the pair's largest effect relative to its minimum
    effect; >= 1 with evidence is drift), ``effect`` (largest raw effect), ``p_adjusted`` (smallest corrected
    p-value), ``drift`` (0/1), plus ``pairs`` with the drifted features of each drifting pair.
    Univariate tests only (multivariate methods per pair would be quadratic in cost twice over).
    """
    labels = [b.name for b in blocks]
    k = len(blocks)
    if k > MATRIX_MAX_BLOCKS:
        return {"labels": labels, "skipped": f"{k} blocks > {MATRIX_MAX_BLOCKS}: matrix not computed"}
    config = spec.drift.model_copy(update={"multivariate": []})
    types = _feature_types(feature_types, spec)
    features = _features(X, spec)
    frames = [features.iloc[b.rows] for b in blocks]
    results = []  # (i, j, FeatureResult)
    for i in range(k):
        profile = ReferenceProfile.build(frames[i], types, config)
        for j in range(i + 1, k):
            for r in compare(profile, frames[j], config).features:
                results.append((i, j, r))
    tested = [(i, j, r) for i, j, r in results
              if r.status in ("drift", "no_drift") and r.p_value is not None and math.isfinite(r.p_value)]
    adjusted = adjust_pvalues([r.p_value for _, _, r in tested], config.correction)
    p_adj = {id(r): float(p) for (_, _, r), p in zip(tested, adjusted)}
    nan = float("nan")
    matrix = np.zeros((k, k))
    effect = np.zeros((k, k))
    pmin = np.ones((k, k))
    drift = np.zeros((k, k), dtype=int)
    pairs = []
    for i in range(k):
        for j in range(i + 1, k):
            mine = [r for a, b, r in results if (a, b) == (i, j) and r.status in ("drift", "no_drift")]
            flagged, score, big, small_p = [], 0.0, 0.0, 1.0
            for r in mine:
                pa = p_adj.get(id(r))
                hit = is_drift(pa, r.effect_size, r.threshold, config.alpha)
                if r.effect_size is not None:
                    big = max(big, r.effect_size)
                    score = max(score, r.effect_size / r.threshold if r.threshold else r.effect_size)
                if pa is not None:
                    small_p = min(small_p, pa)
                if hit:
                    flagged.append(r.feature)
            evaluated = sorted({r.feature for r in mine})
            hit, _ = aggregate(sorted(set(flagged)), evaluated, config.aggregation, config.share_threshold)
            if not evaluated:
                score = big = small_p = nan
            for a, b in ((i, j), (j, i)):
                matrix[a, b], effect[a, b], pmin[a, b], drift[a, b] = score, big, small_p, int(hit)
            if hit:
                pairs.append({"blocks": [labels[i], labels[j]], "features": sorted(set(flagged))})
    return {"labels": labels, "matrix": _json_matrix(matrix), "effect": _json_matrix(effect),
            "p_adjusted": _json_matrix(pmin),
            "drift": drift.tolist(), "pairs": pairs, "correction": config.correction, "alpha": config.alpha,
            "n_tests": len(tested)}


def _json_matrix(a: np.ndarray) -> list[list[float | None]]:
    """A matrix as JSON-able lists (NaN → None)."""
    return [[None if not math.isfinite(v) else round(float(v), 6) for v in row] for row in a]


# -- metrics -------------------------------------------------------------------------------


def scalar_scores(scores: dict[str, Any]) -> dict[str, float]:
    return {k: v for k, v in scores.items() if isinstance(v, (int, float)) and not isinstance(v, bool)}


@step("block-metrics")
def block_scores(model: Any, X: pd.DataFrame, y: pd.Series, blocks: list[Block], task: str) -> dict[str, dict]:
    """The model's metrics on each block's rows (only the scalar metrics)."""
    return {b.name: {"rows": int(b.rows.size), **scalar_scores(evaluate(model, X.iloc[b.rows], y.iloc[b.rows], task))}
            for b in blocks if b.rows.size}


def block_performance_drift(scores: dict[str, Any], at_promotion: dict[str, Any], spec: PipelineSpec,
                            metric: str) -> PerformanceSignal | None:
    """Performance drift of the champion on one block (None when the block is too small or lacks the metric)."""
    if scores.get("rows", 0) < spec.drift.min_samples or scores.get(metric) is None:
        return None
    return performance_drift(scores, at_promotion, spec, metric)


def mlflow_block_metrics(per_block: dict[str, dict], suffix: str = "") -> dict[str, float]:
    """``block_<name>[_<suffix>]_<metric>`` for every scalar metric of every block."""
    out = {}
    for name, scores in per_block.items():
        prefix = f"block_{metric_key(name)}" + (f"_{suffix}" if suffix else "")
        out.update({f"{prefix}_{m}": float(v) for m, v in scalar_scores(scores).items()
                    if m != "rows" and math.isfinite(float(v))})
    return out


@step("log-metrics", retries=2)
def log_metrics(run_id: str | None, metrics: dict[str, float]) -> None:
    """Metrics a kind records beyond the champion/challenger scores (per block, IPIP sizes)."""
    if not run_id or not metrics:
        return
    registry.log_to_run(run_id, metrics=metrics)


# -- the block-wise model --------------------------------------------------------------------


def blockwise_model(spec: PipelineSpec, feature_types: dict[str, str], settings: BlockSettings) -> BlockwiseEstimator:
    """The spec's model (behind its column transformer) as template of a global + per-block model."""
    inner = make_model(spec, {c: t for c, t in feature_types.items() if c != spec.block_column})
    return BlockwiseEstimator(inner, spec.block_column, unseen=settings.unseen,
                              min_block_rows=settings.min_block_rows)


@step("train-blocks")
def fit_blocks(spec: PipelineSpec, feature_types: dict[str, str], settings: BlockSettings,
               X: pd.DataFrame, y: pd.Series) -> BlockwiseEstimator:
    return blockwise_model(spec, feature_types, settings).fit(X, y)


@step("refit-blocks")
def refit_blocks(champion_model: BlockwiseEstimator, settings: BlockSettings, X: pd.DataFrame, y: pd.Series,
                 blocks: list[Any]) -> BlockwiseEstimator:
    """A copy of the champion with only ``blocks`` (values) retrained and the global model refit on ``X``;
    the champion itself is not touched (it may be shared with the registry's cache)."""
    challenger = copy.deepcopy(champion_model)
    challenger.set_params(unseen=settings.unseen, min_block_rows=settings.min_block_rows)
    return challenger.refit_blocks(X, y, blocks)


def refit_data(reference: pd.DataFrame, X_new: pd.DataFrame, y_new: pd.Series, spec: PipelineSpec,
               refit_values: list[Any]) -> tuple[pd.DataFrame, pd.Series]:
    """Rows a selective refit learns from: the new rows, plus (``retrain.data: reference_and_new``) the
    reference rows of every block that is NOT refit (a drifted block's old rows describe what it no longer is)."""
    X_new, y_new = X_new.reset_index(drop=True), y_new.reset_index(drop=True)
    if spec.retrain.data != "reference_and_new" or reference is None or reference.empty:
        return X_new, y_new
    keep = reference[~reference[spec.block_column].isin(refit_values)]
    X = pd.concat([keep[list(X_new.columns)], X_new], ignore_index=True)
    y = pd.concat([keep[spec.target].reset_index(drop=True), y_new], ignore_index=True)
    return X, y


def drift_summary(report: DriftReport) -> dict[str, Any]:
    return {"drift": report.drift_detected, "drifted_features": list(report.drifted_features),
            "reason": report.reason}
