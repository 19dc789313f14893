"""The KV cache of one decode batch, reserved once for the batch's whole length and written in place.

transformers' ``DynamicCache`` grows every layer by concatenation: each sampled token allocates new, slightly
longer keys and values for every layer and frees the old ones (60 allocations per step for SmolLM2-135M, each up
to rows x KV heads x length x head size), so the allocator's heaps hold blocks of ever-changing sizes. Reserving
alone did not stop the default profile's warm-start evaluation from growing (9.7 GiB after 98 of 300 questions);
with glibc's mmap threshold fixed as well (:mod:`tapo.io.allocator`) it peaked at 3.1 GiB. A batch knows its
widest row and its token budget before its first forward, so :class:`ReservedCache` allocates each layer's keys
and values once at that length; rows that stop are moved into the front rows of the same buffers, again without
allocating.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch
from transformers import DynamicCache
from transformers.cache_utils import Cache, DynamicLayer

from tapo.engines.kv_cache import LayerKV, position_bytes


class ReservedLayer(DynamicLayer):
    """A full-attention layer whose keys and values live in buffers ``[rows, heads, capacity, head_dim]``;
    ``keys``/``values`` are views of the first ``rows`` rows and ``length`` positions, as the model expects."""

    def __init__(self, capacity: int, reserved_rows: int = 0) -> None:
        super().__init__()
        self.capacity = capacity
        self.reserved_rows = reserved_rows  # rows to reserve when the first update has fewer (repeated later)
        self.rows = 0
        self.length = 0
        self._key_buffer: torch.Tensor | None = None
        self._value_buffer: torch.Tensor | None = None

    def reserve(self, rows: int, heads: int, head_dim: int, dtype: torch.dtype, device: torch.device) -> None:
        """Allocate the buffers for ``rows`` rows, or ``reserved_rows`` if more (before the first update, or
        instead of it); ``rows`` are live."""
        shape = (max(rows, self.reserved_rows), heads, self.capacity, head_dim)
        self._key_buffer = torch.empty(shape, dtype=dtype, device=device)
        self._value_buffer = torch.empty(shape, dtype=dtype, device=device)
        self.rows, self.length, self.device, self.is_initialized = rows, 0, device, True
        self._expose()

    def update(
        self, key_states: torch.Tensor, value_states: torch.Tensor, *args: Any, **kwargs: Any
    ) -> tuple[torch.Tensor, torch.Tensor]:
        rows, heads, new, head_dim = key_states.shape  # [rows, heads, new positions, head_dim]
        if self._key_buffer is None:
            self.capacity = max(self.capacity, new)
            self.reserve(rows, heads, head_dim, key_states.dtype, key_states.device)
        if self.length + new > self.capacity:  # past the reservation (a caller's budget was wrong): grow once
            self._grow(self.length + new)
        end = self.length + new
        self._key_buffer[: self.rows, :, self.length : end] = key_states
        self._value_buffer[: self.rows, :, self.length : end] = value_states
        self.length = end
        self._expose()
        return self.keys, self.values

    def write_prefix(self, row: int, kv: LayerKV, width: int) -> None:
        """Row ``row``'s cached keys and values, right-aligned in the first ``width`` positions."""
        keys, values = kv  # [heads, n, head_dim] each
        n = keys.shape[1]
        self._key_buffer[row, :, width - n : width] = keys
        self._value_buffer[row, :, width - n : width] = values

    def start_after(self, width: int) -> None:
        """The first ``width`` positions are written (zeros where a row has no cache): the next update follows."""
        self.length = width
        self._expose()

    def zero_prefix(self, width: int) -> None:
        """Zeros in the first ``width`` positions of every row: masked out, and finite so they cannot poison the
        attention sums."""
        self._key_buffer[:, :, :width].zero_()
        self._value_buffer[:, :, :width].zero_()

    def get_seq_length(self) -> int:
        return self.length

    def crop(self, tokens_to_remove: int) -> None:
        if tokens_to_remove > 0:
            raise ValueError("crop takes the number of positions to remove as a negative integer")
        self.length = max(0, self.length + tokens_to_remove)
        self._expose()

    def batch_select_indices(self, indices: torch.Tensor) -> None:
        """Row ``j`` becomes old row ``indices[j]``. Within the buffers when every row moves down (rows that
        stopped leave: copied in ascending order) or every row moves up (a prompt's samples fill the rows
        reserved for them: copied in descending order), as then no row is overwritten before it is read;
        otherwise gathered into new buffers."""
        sources = [int(i) for i in indices.tolist()]
        if all(source >= row for row, source in enumerate(sources)):
            moves = list(enumerate(sources))
        elif all(source <= row for row, source in enumerate(sources)) and len(sources) <= self._key_buffer.shape[0]:
            moves = list(enumerate(sources))[::-1]
        else:
            index = indices.to(self._key_buffer.device)
            self._key_buffer = self._key_buffer.index_select(0, index)
            self._value_buffer = self._value_buffer.index_select(0, index)
            moves = []
        for row, source in moves:
            if row != source:
                self._key_buffer[row, :, : self.length] = self._key_buffer[source, :, : self.length]
                self._value_buffer[row, :, : self.length] = self._value_buffer[source, :, : self.length]
        self.rows = len(sources)
        self._expose()

    def batch_repeat_interleave(self, repeats: int) -> None:
        raise NotImplementedError("a reserved batch cache keeps its rows: repeat the prompts instead")

    def reorder_cache(self, beam_idx: torch.LongTensor) -> None:
        self.batch_select_indices(beam_idx)

    def _grow(self, capacity: int) -> None:
        _, heads, _, head_dim = self._key_buffer.shape
        old_keys, old_values, live_rows, length = self.keys, self.values, self.rows, self.length
        self.capacity = capacity
        self.reserve(live_rows, heads, head_dim, old_keys.dtype, old_keys.device)
        self._key_buffer[:live_rows, :, :length] = old_keys
        self._value_buffer[:live_rows, :, :length] = old_values
        self.rows, self.length = live_rows, length

    def _expose(self) -> None:
        self.keys = self._key_buffer[: self.rows, :, : self.length]  # [rows, heads, length, head_dim]
        self.values = self._value_buffer[: self.rows, :, : self.length]


class ReservedCache(DynamicCache):
    """A ``DynamicCache`` of :class:`ReservedLayer` s, each reserved for ``rows`` x ``capacity`` positions. Only for
    models whose layers are all full attention (the engine checks), as its positions are never dropped or folded."""

    def __init__(self, config: Any, capacity: int, rows: int = 0) -> None:
        layers = config.get_text_config(decoder=True).num_hidden_layers
        Cache.__init__(self, layers=[ReservedLayer(capacity, rows) for _ in range(layers)])

    def load_prefixes(self, hits: Sequence[tuple[int, Sequence[LayerKV] | None]], width: int) -> None:
        """Row ``i``'s stored KV (``hits[i]``: its length and per-layer KV, or (0, None)) right-aligned in the first
        ``width`` positions, the rest zero; the prefill's new positions follow."""
        reference = next(kv for _, kv in hits if kv is not None)
        for layer_index, layer in enumerate(self.layers):
            keys = reference[layer_index][0]  # [heads, n, head_dim]
            layer.reserve(len(hits), keys.shape[0], keys.shape[2], keys.dtype, keys.device)
            layer.zero_prefix(width)
            for row, (_, kv) in enumerate(hits):
                if kv is not None:
                    layer.write_prefix(row, kv[layer_index], width)
            layer.start_after(width)


def row_kv(cache: DynamicCache, columns: torch.Tensor, row: int) -> list[LayerKV]:
    """Batch row ``row``'s keys and values at ``columns`` (its non-padding positions), copied into one buffer
    ``[layers, 2, heads, len(columns), head_dim]`` of its own: one allocation per stored sequence, not two per
    layer, so that entries of the prefix store come and go as whole blocks."""
    first = cache.layers[0].keys  # [rows, heads, length, head_dim]
    shape = (len(cache.layers), 2, first.shape[1], len(columns), first.shape[3])
    block = torch.empty(shape, dtype=first.dtype, device=first.device)
    for index, layer in enumerate(cache.layers):
        torch.index_select(layer.keys[row], 1, columns, out=block[index, 0])
        torch.index_select(layer.values[row], 1, columns, out=block[index, 1])
    return [(block[index, 0], block[index, 1]) for index in range(len(cache.layers))]


def kv_position_bytes(config: Any, dtype: torch.dtype) -> int:
    """Bytes one cached position of the model takes in ``dtype``: keys and values of every layer."""
    text = config.get_text_config(decoder=True)
    head_dim = getattr(text, "head_dim", None) or text.hidden_size // text.num_attention_heads
    kv_heads = getattr(text, "num_key_value_heads", None) or text.num_attention_heads
    return position_bytes(text.num_hidden_layers, kv_heads, head_dim, dtype.itemsize)
