"""Promote: the champion/challenger rule (docs/retraining.md) and the alias moves it implies."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from calmops.core import registry
from calmops.core.metrics import (
    HIGHER_IS_BETTER,
    PairedTest,
    better,
    flawless,
    relative_fall,
    threshold_failures,
)
from calmops.core.spec import PipelineSpec
from calmops.tasks import step


@dataclass
class PromotionDecision:
    promote: bool
    reason: str


def decide(challenger: dict[str, Any], champion: dict[str, Any] | None, spec: PipelineSpec, metric: str,
           paired: PairedTest | None = None) -> PromotionDecision:
    """Promote only if every threshold passes AND (no champion, or the challenger beats it). With ``paired`` (the
    two models' paired test on the same holdout rows) and ``evaluation.promotion_test: paired``, beating means a
    one-sided p-value below ``promotion_alpha`` and a gain of at least ``max(promotion_min_effect, margin)``; a
    metric without a paired test compares the raw scores with that same floor; ``promotion_test: raw`` compares
    them with the margin alone."""
    broken = threshold_failures(challenger, spec.evaluation.thresholds)
    if broken:
        return PromotionDecision(False, "challenger fails thresholds: " + "; ".join(broken))
    if champion is None:
        return PromotionDecision(True, "first model passes its thresholds")
    new, old = challenger.get(metric), champion.get(metric)
    if new is None or old is None:
        return PromotionDecision(False, f"{metric} missing for one of the models; cannot compare")
    ev = spec.evaluation
    margin = ev.promotion_margin
    if ev.promotion_test == "paired" and paired is not None:
        floor = max(ev.promotion_min_effect, margin)
        said = (f"challenger {metric} {paired.challenger:.4f} vs champion {paired.champion:.4f} on the same "
                f"{paired.rows} holdout rows: gain {paired.gain:+.4f}, {paired.test} p = {paired.p_value:.3g}")
        if paired.shows_gain(ev.promotion_alpha, floor):
            return PromotionDecision(True, f"{said} (< {ev.promotion_alpha}, gain ≥ {floor})")
        why = " and ".join(
            ([f"not significant at {ev.promotion_alpha}"] if paired.p_value >= ev.promotion_alpha else [])
            + ([f"gain below the effect floor {floor} (margin {margin})"] if paired.gain < floor else []))
        return PromotionDecision(False, f"{said}: {why}")
    if ev.promotion_test == "paired":  # no paired test for this metric (roc_auc, pr_auc, log_loss): the raw
        # scores, but a gain below the effect floor does not promote, as under the paired test
        margin = max(ev.promotion_min_effect, margin)
        how = f"no paired test for {metric}: raw scores, effect floor {margin}"
    else:
        how = f"margin {margin}"
    if better(metric, new, old, margin):
        return PromotionDecision(True, f"challenger {metric} {new:.4f} beats champion {old:.4f} ({how})")
    return PromotionDecision(False, f"challenger {metric} {new:.4f} does not beat champion {old:.4f} ({how})")


def refresh_due(rows_now: int, rows_then: int | None, growth: float | None,
                serving: dict[str, Any] | None = None, task: str = "classification") -> bool:
    """A no-drift refresh is due when the rows kept so far have grown ``growth``-fold since the champion was
    trained (or since the last refresh was tried), unless the champion made no error on this file (its scores
    there, ``serving``): more rows have nothing to correct, and the refresh waits for a file where it errs."""
    return bool(growth and rows_then and rows_now >= growth * rows_then) and not flawless(serving, task)


def follow_up_due(challenger: dict[str, Any], champion: dict[str, Any], spec: PipelineSpec, metric: str) -> bool:
    """Does a challenger promoted on drift call for one follow-up on the next file? Yes when its holdout score is
    below the replaced champion's score at promotion by more than ``performance_tolerance`` (as a share of that
    score): fit while a change was under way, on rows of both concepts, it is likely short of what the new
    concept allows, and the drift signals, measured against its own score at promotion, will not say so."""
    fall = relative_fall(metric, champion.get(metric), challenger.get(metric))
    return spec.retrain.follow_up and fall is not None and fall > spec.evaluation.performance_tolerance


def decide_refresh(challenger: dict[str, Any], champion: dict[str, Any], spec: PipelineSpec, metric: str,
                   paired: PairedTest | None) -> PromotionDecision:
    """A refresh (no drift; the same recipe on more rows of the same data) is promoted unless it fails a threshold
    or the evidence says it is worse: more data of an unchanged concept is expected to help, and learning curves
    gain by small steps no holdout can prove. With the paired test, it is kept out only when it is worse by at
    least ``promotion_min_effect`` with a one-sided p-value below ``promotion_alpha`` (the same bar a
    challenger must clear to replace the champion, turned round); without one, when its raw score is worse by
    more than ``promotion_min_effect``."""
    broken = threshold_failures(challenger, spec.evaluation.thresholds)
    if broken:
        return PromotionDecision(False, "refresh fails thresholds: " + "; ".join(broken))
    new, old = challenger.get(metric), champion.get(metric)
    if new is None or old is None:
        return PromotionDecision(False, f"{metric} missing for one of the models; cannot compare")
    ev = spec.evaluation
    floor = ev.promotion_min_effect
    if paired is not None and paired.p_worse is not None:
        said = (f"refresh {metric} {paired.challenger:.4f} vs champion {paired.champion:.4f} on the same "
                f"{paired.rows} holdout rows: gain {paired.gain:+.4f}; {paired.test}, one-sided for a loss: p = {paired.p_worse:.3g}")
        if paired.gain <= -floor and paired.p_worse < ev.promotion_alpha:
            return PromotionDecision(False, f"{said}: worse by at least {floor} (p < {ev.promotion_alpha})")
        return PromotionDecision(True, f"{said}: not shown worse (needs a loss of {floor} at p < {ev.promotion_alpha})")
    sign = 1 if HIGHER_IS_BETTER.get(metric, True) else -1
    gain = paired.gain if paired else sign * (new - old)
    said = f"refresh {metric} {new:.4f} vs champion {old:.4f} on the same holdout rows (gain {gain:+.4f})"
    if gain >= -floor:
        return PromotionDecision(True, f"{said}: not worse by more than {floor}")
    return PromotionDecision(False, f"{said}: worse by more than {floor}")


@step("promote", retries=2)
def promote_challenger(pipeline: str, version: int) -> int | None:
    """Move aliases: old champion → previous, this version → champion. Idempotent on retry."""
    return registry.promote(pipeline, version)
