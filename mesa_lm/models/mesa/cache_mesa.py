"""One generation cache for any mix of softmax, linear and mesa layers."""

from __future__ import annotations

import torch
from transformers.cache_utils import Cache


class LayerCache:
    """The cached tensors of one layer, by name.

    Softmax layers keep `keys` and `values` (B, T, H, D); linear layers their state `S`; mesa layers `H` and `G` in
    float32 (or float64); layers with a short convolution their last inputs `conv`. Every tensor has the batch first,
    so beam search and batch expansion act on all of them alike.
    """

    def __init__(self) -> None:
        self.tensors: dict[str, torch.Tensor] = {}

    def get(self, name: str) -> torch.Tensor | None:
        return self.tensors.get(name)

    def set(self, name: str, value: torch.Tensor) -> None:
        self.tensors[name] = value

    def append_kv(self, keys: torch.Tensor, values: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Append new keys and values (B, T, H, D) along time; return all of them."""
        if "keys" in self.tensors:
            keys = torch.cat([self.tensors["keys"], keys], dim=1)
            values = torch.cat([self.tensors["values"], values], dim=1)
        self.tensors["keys"], self.tensors["values"] = keys, values
        return keys, values

    def map_batch(self, fn) -> None:
        self.tensors = {name: fn(t) for name, t in self.tensors.items()}


class MesaCache(Cache):
    """Per-layer states for a [`MesaModel`] and the number of tokens seen so far.

    Unlike transformers' `DynamicCache`, it counts tokens itself, so models without any softmax layer report a
    sequence length, and it stores each mixer's state under its own name, independent of transformers' cache layers.
    """

    is_compileable = False
    is_croppable = False

    def __init__(self, config=None, num_layers: int | None = None):
        # transformers' Cache.__init__ differs between versions and sets up its own layer objects: not called on
        # purpose; every method generate() uses is defined here.
        if num_layers is None:
            if config is None:
                raise ValueError("MesaCache needs a config or num_layers")
            num_layers = config.num_hidden_layers
        self.layers = [LayerCache() for _ in range(num_layers)]
        self.seen_tokens = 0
        self.offloading = False
        self.layer_class_to_replicate = None

    def __len__(self) -> int:
        return len(self.layers)

    def __getitem__(self, layer_idx: int) -> LayerCache:
        return self.layers[layer_idx]

    def __repr__(self) -> str:
        return f"MesaCache(layers={len(self.layers)}, seen_tokens={self.seen_tokens})"

    def advance(self, num_tokens: int) -> None:
        """Count `num_tokens` more tokens (called once per forward, after all layers)."""
        self.seen_tokens += num_tokens

    def get_seq_length(self, layer_idx: int = 0) -> int:
        return self.seen_tokens

    def get_max_length(self, layer_idx: int | None = None) -> int:
        return -1

    def get_mask_sizes(self, query_length: int, layer_idx: int = 0) -> tuple[int, int]:
        return self.seen_tokens + query_length, 0

    @property
    def is_initialized(self) -> bool:
        return self.seen_tokens > 0

    @property
    def batch_size(self) -> int:
        for layer in self.layers:
            for tensor in layer.tensors.values():
                return tensor.shape[0]
        return -1

    def reset(self) -> None:
        for layer in self.layers:
            layer.tensors.clear()
        self.seen_tokens = 0

    def reorder_cache(self, beam_idx: torch.LongTensor) -> None:
        """Keep the rows `beam_idx` (beam search)."""
        for layer in self.layers:
            layer.map_batch(lambda t: t.index_select(0, beam_idx.to(t.device)))

    def batch_repeat_interleave(self, repeats: int) -> None:
        for layer in self.layers:
            layer.map_batch(lambda t: t.repeat_interleave(repeats, dim=0))

    def batch_select_indices(self, indices: torch.Tensor) -> None:
        for layer in self.layers:
            layer.map_batch(lambda t: t[indices])

    def crop(self, tokens_to_remove: int) -> None:
        raise NotImplementedError(
            "MesaCache cannot be cropped: linear and mesa states cannot forget tokens (assisted decoding is unsupported)"
        )
