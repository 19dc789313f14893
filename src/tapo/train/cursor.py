"""The data cursor: which prompts come next, over epochs, reshuffled per epoch from the run seed.

It is a few integers (epoch, position), so a checkpoint can store it and a resumed run continues with
exactly the prompts the killed run would have drawn next. With ``strata`` (each prompt's kind) an epoch's order
interleaves the kinds in proportion (:mod:`tapo.train.strata`), still shuffled within each kind.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

import torch

from tapo.train.strata import group_by_kind, stratified_order


@dataclass
class PromptCursor:
    size: int
    seed: int = 0
    shuffle: bool = True
    epoch: int = 0
    position: int = 0
    strata: Sequence[str] | None = None  # the kind of every prompt; None = no stratification
    _cached: tuple[int, list[int]] | None = field(default=None, init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        if self.size < 1:
            raise ValueError("the training set is empty: nothing to draw prompts from")
        if self.strata is not None and len(self.strata) != self.size:
            raise ValueError(f"{len(self.strata)} kinds for {self.size} prompts")

    def _order(self, epoch: int) -> list[int]:
        """The epoch's order, built once per epoch (skipping draws prompts one at a time)."""
        if self._cached is None or self._cached[0] != epoch:
            self._cached = (epoch, self._build_order(epoch))
        return self._cached[1]

    def _build_order(self, epoch: int) -> list[int]:
        generator = torch.Generator().manual_seed(self.seed * 100_003 + epoch) if self.shuffle else None
        if self.strata is None:
            return torch.randperm(self.size, generator=generator).tolist() if generator else list(range(self.size))
        members = group_by_kind(self.strata)
        rank = list(members)
        if generator is not None:
            members = {
                k: [m[i] for i in torch.randperm(len(m), generator=generator).tolist()] for k, m in members.items()
            }
            rank = [rank[i] for i in torch.randperm(len(rank), generator=generator).tolist()]
        return stratified_order(members, rank)

    def take(self, count: int) -> list[int]:
        """The next ``count`` example indices, crossing into the next epoch (reshuffled) when one ends."""
        out: list[int] = []
        while len(out) < count:
            order = self._order(self.epoch)
            chunk = order[self.position : self.position + count - len(out)]
            out.extend(chunk)
            self.position += len(chunk)
            if self.position >= self.size:
                self.epoch += 1
                self.position = 0
        return out

    @property
    def consumed(self) -> int:
        return self.epoch * self.size + self.position

    def state_dict(self) -> dict[str, int]:
        return {"epoch": self.epoch, "position": self.position}

    def load_state_dict(self, state: dict[str, int]) -> None:
        self.epoch, self.position = int(state["epoch"]), int(state["position"])
