"""Promote: the champion/challenger rule (docs/retraining.md) and the alias moves it implies."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from calmops.core import registry
from calmops.core.metrics import better, threshold_failures
from calmops.core.spec import PipelineSpec
from calmops.tasks import step


@dataclass
class PromotionDecision:
    promote: bool
    reason: str


def decide(challenger: dict[str, Any], champion: dict[str, Any] | None, spec: PipelineSpec, metric: str) -> PromotionDecision:
    """Promote only if every threshold passes AND (no champion, or the primary metric beats it by the margin)."""
    broken = threshold_failures(challenger, spec.evaluation.thresholds)
    if broken:
        return PromotionDecision(False, "challenger fails thresholds: " + "; ".join(broken))
    if champion is None:
        return PromotionDecision(True, "first model passes its thresholds")
    new, old = challenger.get(metric), champion.get(metric)
    if new is None or old is None:
        return PromotionDecision(False, f"{metric} missing for one of the models; cannot compare")
    margin = spec.evaluation.promotion_margin
    if better(metric, new, old, margin):
        return PromotionDecision(True, f"challenger {metric} {new:.4f} beats champion {old:.4f} (margin {margin})")
    return PromotionDecision(
        False, f"challenger {metric} {new:.4f} does not beat champion {old:.4f} by the margin {margin}"
    )


@step("promote", retries=2)
def promote_challenger(pipeline: str, version: int) -> int | None:
    """Move aliases: old champion → previous, this version → champion. Idempotent on retry."""
    return registry.promote(pipeline, version)
