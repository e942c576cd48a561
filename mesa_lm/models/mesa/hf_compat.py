"""Where the installed transformers differs between the versions we support (5.17 to the newest), detected once.

The modeling code asks this module, never a version string. Detection is by feature, so a release that keeps a
feature keeps working and one that changes it fails here, in one place, rather than silently elsewhere.

- The cache's name. transformers 5.24 renamed the `past_key_values` field of every `ModelOutput` to `cache`, and
  `generate()` passes the cache to `forward` as `cache=`; 5.17-5.23 use `past_key_values` for both.
"""

from __future__ import annotations

import dataclasses

from transformers.modeling_outputs import CausalLMOutputWithPast

# The name the installed transformers gives the cache: the output field, and the keyword generate() passes.
CACHE_NAME = "cache" if "cache" in {f.name for f in dataclasses.fields(CausalLMOutputWithPast)} else "past_key_values"


def resolve_cache(cache, past_key_values):
    """The cache a caller passed, under either name (both are accepted on every version); an error if both are."""
    if cache is not None and past_key_values is not None:
        raise ValueError("pass the cache once: as `cache` or as `past_key_values`, not both")
    return cache if cache is not None else past_key_values


def cache_field(cache) -> dict:
    """`{name: cache}` to construct an output dataclass with, under the installed version's field name."""
    return {CACHE_NAME: cache}


__all__ = ["CACHE_NAME", "cache_field", "enable_activation_checkpointing", "resolve_cache"]


def enable_activation_checkpointing(model) -> None:
    """Recompute every block's activations in the backward pass, by the installed version's name for it.

    transformers 5.23 renamed `gradient_checkpointing_enable` to `activation_checkpointing_enable` and 5.24 warns on
    the old name; 5.17-5.22 have only the old one.
    """
    if hasattr(model, "activation_checkpointing_enable"):
        model.activation_checkpointing_enable()
    else:
        model.gradient_checkpointing_enable()
