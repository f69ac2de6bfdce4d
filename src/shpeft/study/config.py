"""The `study` section: which runs the study reads, and the grid of shares it measures."""

from __future__ import annotations

from typing import Annotated

from pydantic import Field

from shpeft.config import Name, Section

#: The study folder's headline numbers (`shpeft.steps.study`).
STUDY_SUMMARY = "study.json"
#: The sparsity curve's shares of entries kept: half-decades from 1e-5 to all of them.
DEFAULT_SHARES = (1e-5, 3e-5, 1e-4, 3e-4, 1e-3, 3e-3, 0.01, 0.03, 0.1, 0.3, 1.0)


class StudyConfig(Section):
    """The `study` and `oracle` steps: sparsity and hybridity of full fine-tuning's change."""

    enabled: bool = True
    """Run the study per dataset and seed, while the grid holds `method`."""
    method: Name = "full"
    """The grid's method (of kind `full`) whose runs give the fine-tuning change."""
    mask: Name = "hybrid"
    """The mask variant (a key of `masks`) whose budget and candidates define the key weights
    and the oracle mask (`sparse-oracle`): its tensors are those ranked by change, and its k is
    the number of key weights unless `key_share` says otherwise."""
    key_share: float | None = Field(None, gt=0, le=1)
    """Key weights as a fraction of the backbone's weights (unset: the mask's budget, so the
    key weights are exactly the oracle mask)."""
    shares: list[Annotated[float, Field(gt=0, le=1)]] = Field(
        default_factory=lambda: list(DEFAULT_SHARES), min_length=1
    )
    """Shares of the entries kept by the sparsity curve, the top by change (1: full
    fine-tuning; the pretrained backbone, share 0, is always measured too; the fine-tuned head is
    kept at every share)."""
    scope: list[str] = Field(default_factory=lambda: ["*"], min_length=1)
    """Glob patterns of the backbone tensors the sparsity curve ranks by change (every one by
    default); the others are reset to their pretrained values at every share."""
