"""The pipeline kinds: one entry each in :data:`KINDS`, read by the spec, ingest, the flows, the deployments and
the viewer. Adding a kind is its flow module (``calmops/flows/<kind>.py``) plus one entry here (and its
deployment in ``prefect.yaml`` for the per-kind scheme).

>>> [kind.name for kind in KINDS.values()]
['stream', 'block', 'ipip']
>>> KINDS["block"].flow_name, KINDS["block"].entrypoint
('calmops-block', 'calmops.flows.block.block_flow')
>>> kind_of("blocks")
Traceback (most recent call last):
...
KeyError: "unknown pipeline kind 'blocks' (known: stream, block, ipip)"
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal, get_args

KindName = Literal["stream", "block", "ipip"]


@dataclass(frozen=True)
class Kind:
    name: str
    summary: str
    needs_block_column: bool  # every file names its block (a site, a month) in ``block_column``
    block_column_is_feature: bool  # the block column is a model input; otherwise it only splits the file
    default_model: str | None = None  # the estimator when the spec names none (None: the spec's own default)
    # the ``retrain`` keys the kind's flow reads (None: all), and how it retrains instead of the others
    retrain_keys: frozenset[str] | None = None
    retraining: str = ""
    uses_thresholds: bool = True  # ``evaluation.thresholds`` gate its promotions (ipip promotes every update)

    def block_column_needed(self, prediction_only: bool) -> bool:
        """Whether a file must carry the block column: always where the model reads it (block: it routes each
        row to its block's model, in the API too); where it only splits a file to learn from (ipip: the
        per-block prequential scores), not in a prediction-only pipeline, which learns and scores nothing per
        block (the ensemble never reads the column: the API takes records without it as well)."""
        return self.needs_block_column and (self.block_column_is_feature or not prediction_only)

    @property
    def flow_name(self) -> str:
        """The Prefect flow's name (deployments are ``<flow_name>/<pipeline>``)."""
        return f"calmops-{self.name}"

    @property
    def entrypoint(self) -> str:
        """The kind's flow as ``module.function`` (what ``prefect.yaml`` and :func:`calmops.flows.flow_for` load)."""
        return f"calmops.flows.{self.name}.{self.name}_flow"


KINDS: dict[str, Kind] = {
    k.name: k
    for k in (
        Kind("stream", "file by file: one model, checked and retrained on each file",
             needs_block_column=False, block_column_is_feature=False),
        Kind("block", "blocks inside each file: a global model plus one model per block, blocks checked one by one",
             needs_block_column=True, block_column_is_feature=True,
             retrain_keys=frozenset({"data", "retrain_on", "history_max_batches"}),
             retraining="a block pipeline refits only its drifted and new blocks and its global model (retrain.data "
                        "and retrain.retrain_on apply)"),
        Kind("ipip", "an adaptive ensemble for imbalanced data, updated on every batch",
             needs_block_column=True, block_column_is_feature=False,
             default_model="calmops.core.ipip.IPIPClassifier",
             retrain_keys=frozenset({"history_max_batches"}),
             retraining="an ipip pipeline updates its ensemble on every file, with no drift gate",
             uses_thresholds=False),
    )
}
assert tuple(KINDS) == get_args(KindName), "KindName and KINDS list the same kinds"


def kind_of(name: str) -> Kind:
    """The kind named ``name``; a clear error for an unknown one."""
    try:
        return KINDS[name]
    except KeyError:
        raise KeyError(f"unknown pipeline kind {name!r} (known: {', '.join(KINDS)})") from None
