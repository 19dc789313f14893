"""The data cursor: which prompts come next, over epochs, reshuffled per epoch from the run seed.

It is a few integers (epoch, position), so a checkpoint can store it and a resumed run continues with
exactly the prompts the killed run would have drawn next.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch


@dataclass
class PromptCursor:
    size: int
    seed: int = 0
    shuffle: bool = True
    epoch: int = 0
    position: int = 0

    def __post_init__(self) -> None:
        if self.size < 1:
            raise ValueError("the training set is empty: nothing to draw prompts from")

    def _order(self, epoch: int) -> list[int]:
        if not self.shuffle:
            return list(range(self.size))
        generator = torch.Generator().manual_seed(self.seed * 100_003 + epoch)
        return torch.randperm(self.size, generator=generator).tolist()

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
