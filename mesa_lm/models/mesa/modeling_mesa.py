"""mesa-lm models: a Transformer whose layers mix softmax attention, linear attention and mesa layers."""

from __future__ import annotations

import dataclasses

import torch
from torch import nn
from transformers import GenerationMixin, PreTrainedModel
from transformers import initialization as init
from transformers.modeling_layers import GradientCheckpointingLayer
from transformers.modeling_outputs import BaseModelOutputWithPast, CausalLMOutputWithPast
from transformers.utils import ModelOutput, logging

from ...layers.gates import GateProjection
from ...layers.linear_attention import LinearAttention
from ...layers.mesa_layer import MesaLayer
from ...layers.mlp import make_mlp
from ...layers.norms import RMSNorm, make_norm
from ...layers.softmax_attention import SoftmaxAttention
from .cache_mesa import MesaCache
from .configuration_mesa import MesaConfig
from .hf_compat import CACHE_NAME, cache_field, resolve_cache
from .remote_code import AUTO_MAP, write_remote_code

logger = logging.get_logger(__name__)

MIXERS = {"softmax": SoftmaxAttention, "linear": LinearAttention, "mesa": MesaLayer}
# The keywords MesaForCausalLM.forward passes on to transformers' loss function.
LOSS_KWARGS = {"num_items_in_batch", "ignore_index"}


class MesaBlock(GradientCheckpointingLayer):
    """Pre-norm residual block: `h + mixer(norm(h))`, then `h + mlp(norm(h))`, then optional clipping.

    With gradient checkpointing on, its activations are recomputed in the backward pass; the model never passes it a
    cache then (a replay would write the recurrent states twice).
    """

    def __init__(self, config: MesaConfig, layer_idx: int):
        super().__init__()
        self.mixer_type = config.mixer_types[layer_idx]
        self.mixer_norm = make_norm(config.norm_type, config.hidden_size, config.norm_eps, config.use_bias)
        self.mixer = MIXERS[self.mixer_type](config, layer_idx)
        self.mlp = make_mlp(config.mlp_type, config.hidden_size, config.intermediate_size, config.use_bias)
        self.mlp_norm = (
            make_norm(config.norm_type, config.hidden_size, config.norm_eps, config.use_bias)
            if self.mlp is not None
            else None
        )
        self.activation_clip = config.activation_clip

    def forward(self, hidden_states, attention_mask=None, position_ids=None, layer_cache=None, output_attentions=False):
        mixed, weights = self.mixer(
            self.mixer_norm(hidden_states), attention_mask, position_ids, layer_cache, output_attentions
        )
        hidden_states = hidden_states + mixed
        if self.mlp is not None:
            hidden_states = hidden_states + self.mlp(self.mlp_norm(hidden_states))
        if self.activation_clip is not None:
            hidden_states = hidden_states.clamp(-self.activation_clip, self.activation_clip)
        return hidden_states, weights


class MesaPreTrainedModel(PreTrainedModel):
    config_class = MesaConfig
    config: MesaConfig
    base_model_prefix = "model"
    supports_gradient_checkpointing = True
    _no_split_modules = ["MesaBlock"]
    _skip_keys_device_placement = [CACHE_NAME]
    _supports_sdpa = True
    _supports_flash_attn = False
    _supports_flex_attn = False

    def save_pretrained(self, save_directory, *args, **kwargs):
        """`PreTrainedModel.save_pretrained`, plus the model's code and `auto_map`, for `trust_remote_code` loading.

        A class registered with `register_for_auto_class` is added to `auto_map`. transformers' own code copier is
        bypassed: it follows only same-folder imports, and this package's layers and ops live in other folders.
        """
        auto_map = dict(AUTO_MAP)
        if type(self)._auto_class is not None:
            auto_map[type(self)._auto_class] = f"modeling_mesa.{type(self).__name__}"
        self.config.auto_map = auto_map
        registered = type(self)._auto_class, type(self.config)._auto_class
        type(self)._auto_class = type(self.config)._auto_class = None
        try:
            super().save_pretrained(save_directory, *args, **kwargs)
        finally:
            type(self)._auto_class, type(self.config)._auto_class = registered
        if kwargs.get("is_main_process", True):
            write_remote_code(save_directory)

    @torch.no_grad()
    def _init_weights(self, module: nn.Module) -> None:
        std = self.config.initializer_range
        if isinstance(module, GateProjection):
            init.normal_(module.weight, mean=0.0, std=std)
            init.constant_(module.bias, module.bias_init)
        elif isinstance(module, nn.Linear):
            init.normal_(module.weight, mean=0.0, std=std)
            if module.bias is not None:
                init.zeros_(module.bias)
        elif isinstance(module, nn.Embedding):
            init.normal_(module.weight, mean=0.0, std=std)
        elif isinstance(module, (nn.LayerNorm, RMSNorm)):
            if module.weight is not None:
                init.ones_(module.weight)
            if getattr(module, "bias", None) is not None:
                init.zeros_(module.bias)
        elif isinstance(module, nn.Conv1d):
            # torch's default (Kaiming-uniform over the kernel width) keeps the short convolution's output at unit
            # scale; a normal(0, 0.02) start would nearly silence q, k and v.
            bound = 1.0 / module.kernel_size[0] ** 0.5
            init.uniform_(module.weight, -bound, bound)
        elif isinstance(module, MesaLayer):
            init.constant_(module.regulariser_parameter(), module.regulariser_parameter_init())


class MesaModel(MesaPreTrainedModel):
    """The stack of blocks: token (or given) embeddings in, final hidden states out."""

    def __init__(self, config: MesaConfig):
        super().__init__(config)
        self.embed_tokens = nn.Embedding(config.vocab_size, config.hidden_size) if config.vocab_size else None
        self.embed_positions = (
            nn.Embedding(config.max_position_embeddings, config.hidden_size)
            if config.position_type == "learned"
            else None
        )
        self.layers = nn.ModuleList(MesaBlock(config, i) for i in range(config.num_hidden_layers))
        self.norm = make_norm(config.norm_type, config.hidden_size, config.norm_eps, config.use_bias)
        self.gradient_checkpointing = False
        self.post_init()

    def get_input_embeddings(self) -> nn.Module | None:
        return self.embed_tokens

    def set_input_embeddings(self, value: nn.Module) -> None:
        self.embed_tokens = value

    def forward(
        self,
        input_ids: torch.LongTensor | None = None,
        attention_mask: torch.Tensor | None = None,
        position_ids: torch.LongTensor | None = None,
        cache: MesaCache | None = None,
        inputs_embeds: torch.Tensor | None = None,
        use_cache: bool | None = None,
        output_attentions: bool | None = None,
        output_hidden_states: bool | None = None,
        return_dict: bool | None = None,
        past_key_values: MesaCache | None = None,
    ) -> BaseModelOutputWithPast | tuple:
        """Final hidden states; the cache may be passed as `cache` (transformers >= 5.24) or `past_key_values`."""
        cache = resolve_cache(cache, past_key_values)
        output_attentions = output_attentions if output_attentions is not None else self.config.output_attentions
        output_hidden_states = (
            output_hidden_states if output_hidden_states is not None else self.config.output_hidden_states
        )
        if self.gradient_checkpointing and self.training and torch.is_grad_enabled():
            # A checkpointed block runs twice; a cache would take the second run's states on top of the first's.
            if use_cache or cache is not None:
                logger.warning_once("gradient checkpointing is on in training: the cache is not used")
            use_cache, cache = False, None
        use_cache = use_cache if use_cache is not None else self.config.use_cache
        return_dict = return_dict if return_dict is not None else self.config.return_dict
        inputs_embeds = self._embed(input_ids, inputs_embeds)
        B, T, _ = inputs_embeds.shape

        if cache is not None and not isinstance(cache, MesaCache):
            raise TypeError(
                f"the cache is a {type(cache).__name__}; mesa models need a MesaCache "
                "(mesa_lm.MesaCache(config)), which holds linear and mesa states as well as keys and values"
            )
        if use_cache and cache is None:
            cache = MesaCache(self.config)
        past_len = cache.get_seq_length() if cache is not None else 0

        attention_mask = self._key_mask(attention_mask, B, past_len + T)
        if position_ids is None:
            position_ids = self._position_ids(attention_mask, B, T, past_len, inputs_embeds.device)
        if self.config.position_type in ("learned", "concat") and past_len + T > self.config.max_position_embeddings:
            raise ValueError(
                f"sequence of {past_len + T} positions exceeds max_position_embeddings="
                f"{self.config.max_position_embeddings} of this model's {self.config.position_type} positions"
            )

        hidden_states = inputs_embeds
        if self.embed_positions is not None:
            hidden_states = hidden_states + self.embed_positions(position_ids)
        all_hidden_states = () if output_hidden_states else None
        all_attentions = () if output_attentions else None
        for idx, block in enumerate(self.layers):
            if output_hidden_states:
                all_hidden_states += (hidden_states,)
            hidden_states, weights = block(
                hidden_states,  # positional: gradient checkpointing passes only positional inputs through
                attention_mask=attention_mask,
                position_ids=position_ids,
                layer_cache=cache[idx] if cache is not None else None,
                output_attentions=output_attentions,
            )
            if output_attentions:
                all_attentions += (weights,)
        hidden_states = self.norm(hidden_states)
        if output_hidden_states:
            all_hidden_states += (hidden_states,)
        if cache is not None:
            cache.advance(T)

        output = BaseModelOutputWithPast(
            last_hidden_state=hidden_states,
            **cache_field(cache if use_cache else None),
            hidden_states=all_hidden_states,
            attentions=all_attentions,
        )
        return output if return_dict else output.to_tuple()

    def _embed(self, input_ids: torch.Tensor | None, inputs_embeds: torch.Tensor | None) -> torch.Tensor:
        if (input_ids is None) == (inputs_embeds is None):
            raise ValueError("pass exactly one of input_ids (B, T) and inputs_embeds (B, T, hidden_size)")
        if inputs_embeds is not None:
            if inputs_embeds.dim() != 3 or inputs_embeds.shape[-1] != self.config.hidden_size:
                raise ValueError(
                    f"inputs_embeds has shape {tuple(inputs_embeds.shape)}; expected (B, T, {self.config.hidden_size})"
                )
            return inputs_embeds
        if self.embed_tokens is None:
            raise ValueError("this model has no token embeddings (vocab_size=None); pass inputs_embeds")
        if input_ids.dim() != 2:
            raise ValueError(f"input_ids has shape {tuple(input_ids.shape)}; expected (B, T)")
        return self.embed_tokens(input_ids)

    @staticmethod
    def _key_mask(attention_mask: torch.Tensor | None, batch: int, total_len: int) -> torch.Tensor | None:
        """The padding mask over past and current tokens as booleans (B, past + T), or None if nothing is masked."""
        if attention_mask is None:
            return None
        if isinstance(attention_mask, dict) or attention_mask.dim() != 2:
            raise ValueError(
                "attention_mask must be a 2-D (B, past + T) tensor of 0/1 marking real tokens, got "
                f"{type(attention_mask).__name__} of shape {getattr(attention_mask, 'shape', None)}"
            )
        if tuple(attention_mask.shape) != (batch, total_len):
            raise ValueError(
                f"attention_mask has shape {tuple(attention_mask.shape)}; expected ({batch}, {total_len}) "
                "covering the cached and the new tokens"
            )
        mask = attention_mask.bool()
        if torch.compiler.is_compiling():
            return mask  # reading the values back would break the graph; a full mask gives the same result
        return None if bool(mask.all()) else mask

    @staticmethod
    def _position_ids(key_mask, batch: int, T: int, past_len: int, device) -> torch.Tensor:
        """Positions counted over real tokens only, so a left-padded row sees the positions it would see alone."""
        if key_mask is None:
            return torch.arange(past_len, past_len + T, device=device).expand(batch, T)
        return (key_mask.long().cumsum(-1) - 1).clamp(min=0)[:, -T:]


class MesaForCausalLM(MesaPreTrainedModel, GenerationMixin):
    """A [`MesaModel`] with a language-modelling head (tied to the embeddings by default)."""

    _tied_weights_keys = {"lm_head.weight": "model.embed_tokens.weight"}

    def __init__(self, config: MesaConfig):
        super().__init__(config)
        if not config.vocab_size:
            raise ValueError("MesaForCausalLM needs a token vocabulary: MesaConfig.vocab_size must be set")
        self.model = MesaModel(config)
        self.lm_head = nn.Linear(config.hidden_size, config.vocab_size, bias=False)
        self.post_init()

    def get_input_embeddings(self) -> nn.Module:
        return self.model.embed_tokens

    def set_input_embeddings(self, value: nn.Module) -> None:
        self.model.embed_tokens = value

    def get_output_embeddings(self) -> nn.Module:
        return self.lm_head

    def set_output_embeddings(self, value: nn.Module) -> None:
        self.lm_head = value

    def forward(
        self,
        input_ids: torch.LongTensor | None = None,
        attention_mask: torch.Tensor | None = None,
        position_ids: torch.LongTensor | None = None,
        cache: MesaCache | None = None,
        inputs_embeds: torch.Tensor | None = None,
        labels: torch.LongTensor | None = None,
        use_cache: bool | None = None,
        output_attentions: bool | None = None,
        output_hidden_states: bool | None = None,
        return_dict: bool | None = None,
        logits_to_keep: int = 0,
        past_key_values: MesaCache | None = None,
        **loss_kwargs,
    ) -> CausalLMOutputWithPast | tuple:
        """Logits for every position (or the last `logits_to_keep`); `loss` is next-token cross-entropy on `labels`.

        The cache may be passed as `cache` (transformers >= 5.24) or `past_key_values`. Other keywords go to the loss
        (`num_items_in_batch`, `ignore_index`); any other name is an error rather than silently ignored.
        """
        unknown = sorted(set(loss_kwargs) - LOSS_KWARGS)
        if unknown:
            raise TypeError(f"MesaForCausalLM.forward got unexpected keyword arguments {unknown}")
        return_dict = return_dict if return_dict is not None else self.config.return_dict
        outputs = self.model(
            input_ids=input_ids,
            attention_mask=attention_mask,
            position_ids=position_ids,
            cache=resolve_cache(cache, past_key_values),
            inputs_embeds=inputs_embeds,
            use_cache=use_cache,
            output_attentions=output_attentions,
            output_hidden_states=output_hidden_states,
            return_dict=True,
        )
        hidden_states = outputs.last_hidden_state
        if logits_to_keep:
            hidden_states = hidden_states[:, -logits_to_keep:]
        logits = self.lm_head(hidden_states)
        loss = None
        if labels is not None:
            loss = self.loss_function(logits=logits, labels=labels, vocab_size=self.config.vocab_size, **loss_kwargs)
        output = CausalLMOutputWithPast(
            loss=loss,
            logits=logits,
            **cache_field(getattr(outputs, CACHE_NAME)),
            hidden_states=outputs.hidden_states,
            attentions=outputs.attentions,
        )
        return output if return_dict else output.to_tuple()

    def _prepare_cache_for_generation(self, generation_config, model_kwargs, *args, **kwargs):
        # generate() would otherwise build a DynamicCache, which cannot hold linear and mesa states.
        if model_kwargs.get(CACHE_NAME) is None and generation_config.use_cache is not False:
            model_kwargs[CACHE_NAME] = MesaCache(self.config)
        return super()._prepare_cache_for_generation(generation_config, model_kwargs, *args, **kwargs)


# Built rather than declared so that its cache field has the installed transformers' name, like its own outputs.
CausalRegressionOutput = dataclasses.make_dataclass(
    "CausalRegressionOutput",
    [
        ("loss", "torch.Tensor | None", None),
        ("predictions", "torch.Tensor | None", None),
        (CACHE_NAME, "MesaCache | None", None),
        ("hidden_states", "tuple[torch.Tensor, ...] | None", None),
        ("attentions", "tuple[torch.Tensor, ...] | None", None),
    ],
    bases=(ModelOutput,),
    namespace={
        "__module__": __name__,
        "__doc__": "Outputs of [`MesaForCausalRegression`]: `predictions` (B, T, output_dim), the loss against "
        f"`targets`, the cache (as `{CACHE_NAME}`), hidden states and attention maps.",
    },
)


class MesaForCausalRegression(MesaPreTrainedModel):
    """A [`MesaModel`] on real-valued sequences: `inputs` (B, T, input_dim) -> `predictions` (B, T, output_dim).

    The read-in is a linear map or the identity, the read-out a linear map or the first `output_dim` entries of the
    residual stream, so [P1]'s constructed-token models are expressed exactly.
    """

    def __init__(self, config: MesaConfig):
        super().__init__(config)
        if config.input_dim is None or config.output_dim is None:
            raise ValueError("MesaForCausalRegression needs MesaConfig.input_dim and output_dim to be set")
        self.model = MesaModel(config)
        self.read_in = (
            nn.Linear(config.input_dim, config.hidden_size, bias=config.use_bias)
            if config.read_in == "linear"
            else None
        )
        self.read_out = (
            nn.Linear(config.hidden_size, config.output_dim, bias=config.use_bias)
            if config.read_out == "linear"
            else None
        )
        self.post_init()

    def forward(
        self,
        inputs: torch.Tensor,
        targets: torch.Tensor | None = None,
        target_mask: torch.Tensor | None = None,
        attention_mask: torch.Tensor | None = None,
        cache: MesaCache | None = None,
        use_cache: bool | None = None,
        output_attentions: bool | None = None,
        output_hidden_states: bool | None = None,
        return_dict: bool | None = None,
        past_key_values: MesaCache | None = None,
    ) -> CausalRegressionOutput | tuple:
        """`loss = 1/2 * sum over dims of squared error`, averaged over batch and positions.

        `target_mask` (B, T), if given, restricts the average to the positions it marks (e.g. the label positions of
        a few-shot prompt). The cache may be passed as `cache` (transformers >= 5.24) or `past_key_values`.
        """
        return_dict = return_dict if return_dict is not None else self.config.return_dict
        if inputs.dim() != 3 or inputs.shape[-1] != self.config.input_dim:
            raise ValueError(f"inputs has shape {tuple(inputs.shape)}; expected (B, T, {self.config.input_dim})")
        embeds = self.read_in(inputs) if self.read_in is not None else inputs
        outputs = self.model(
            inputs_embeds=embeds,
            attention_mask=attention_mask,
            cache=resolve_cache(cache, past_key_values),
            use_cache=use_cache if use_cache is not None else False,
            output_attentions=output_attentions,
            output_hidden_states=output_hidden_states,
            return_dict=True,
        )
        hidden = outputs.last_hidden_state
        predictions = self.read_out(hidden) if self.read_out is not None else hidden[..., : self.config.output_dim]
        loss = None
        if targets is not None:
            if targets.shape != predictions.shape:
                raise ValueError(
                    f"targets has shape {tuple(targets.shape)}; expected {tuple(predictions.shape)} like the predictions"
                )
            wide = torch.promote_types(predictions.dtype, torch.float32)  # float32, or float64 for a float64 model
            per_position = 0.5 * (predictions.to(wide) - targets.to(wide)).pow(2).sum(-1)
            if target_mask is None:
                loss = per_position.mean()
            else:
                weights = target_mask.to(per_position.dtype)
                loss = (per_position * weights).sum() / weights.sum().clamp(min=1.0)
        output = CausalRegressionOutput(
            loss=loss,
            predictions=predictions,
            **cache_field(getattr(outputs, CACHE_NAME)),
            hidden_states=outputs.hidden_states,
            attentions=outputs.attentions,
        )
        return output if return_dict else output.to_tuple()


__all__ = [
    "CausalRegressionOutput",
    "MesaForCausalLM",
    "MesaForCausalRegression",
    "MesaModel",
    "MesaPreTrainedModel",
]
