"""transformers' `ModelTesterMixin` and `ConfigTester` on four layer mixes of the mesa family.

The two upstream files come from the sdist of the installed transformers (`fetch.py`; fetched once per version with
pip). If they cannot be fetched, one test fails with the reason on one line; set `MESA_LM_SKIP_UPSTREAM_TESTS=1` to
skip instead (offline work). Tests that cannot apply to this family are skipped with the reason, and every one is
listed in docs/compatibility.md ("transformers' own model tests"), which `test_docs_list_every_skip` checks.
"""

from __future__ import annotations

import functools
import os
import re
import unittest
from pathlib import Path
from unittest import mock

import pytest
import torch

from mesa_lm import MesaConfig, MesaForCausalLM, MesaModel

from . import fetch

try:
    _modeling_common, _configuration_common = fetch.load()
    _UNAVAILABLE = None
except fetch.UpstreamTestsUnavailable as exc:
    _UNAVAILABLE = str(exc)

_DOC = Path(__file__).resolve().parents[2] / "docs" / "compatibility.md"
_DOC_SECTION = "## transformers' own model tests"

# The four mixes, each with mixer options that exercise more of the family's parameters (softmax layers with
# grouped-query attention: 2 query heads share 1 key/value head; RoPE parameters stated in full, partial rotation
# included, so upstream's RoPE tests run rather than skip themselves).
_ROPE_PARAMETERS = {"rope_type": "default", "rope_theta": 10000.0, "partial_rotary_factor": 1.0}
MIXES = {
    "softmax": dict(mixer_types=["softmax", "softmax"], num_key_value_heads=1, rope_parameters=_ROPE_PARAMETERS),
    "linear": dict(mixer_types=["linear", "linear"], linear_gate=True, linear_qk_norm=True),
    "mesa": dict(
        mixer_types=["mesa", "mesa"],
        mesa_lambda_type="diagonal",
        mesa_gate="data",
        mesa_qk_norm=True,
        mesa_conv_size=4,
        mesa_output_norm=True,
    ),
    "hybrid": dict(mixer_types=["softmax", "linear", "mesa"], num_key_value_heads=1, rope_parameters=_ROPE_PARAMETERS),
}

# Upstream tests skipped here, with the reason (every mix, then per mix). Keep docs/compatibility.md in step:
# test_docs_list_every_skip checks that every name below is listed there.
_ROPE = "RoPE rotates only the softmax layers' queries and keys; this mix has no softmax layer, so no RoPE to scale"
NOT_APPLICABLE: dict[str, str] = {
    "test_generation_tester_mixin_inheritance": (
        "transformers' sdist does not ship GenerationTesterMixin (tests/generation/), so its generate tests cannot "
        "run here; generate() is tested for every mix in tests/models/test_generation.py"
    ),
}
NOT_APPLICABLE_PER_MIX: dict[str, dict[str, str]] = {
    "linear": {
        "test_model_rope_scaling_from_config": _ROPE,
        "test_model_rope_scaling_frequencies": _ROPE,
        "test_model_rope_with_partial_rotation": _ROPE,
    },
    "mesa": {
        "test_model_rope_scaling_from_config": _ROPE,
        "test_model_rope_scaling_frequencies": _ROPE,
        "test_model_rope_with_partial_rotation": _ROPE,
    },
    "hybrid": {
        "test_num_layers_is_small": (
            "softmax+linear+mesa needs three layers, one per mixer; upstream's limit of two layers keeps its "
            "test configs fast"
        ),
    },
}

# Upstream tests that skip themselves here, and why that is right. Any other self-skip of an upstream test fails
# (conftest.py), so a skip cannot hide a gap in the model. Three kinds, as in docs/compatibility.md.
_COMPOSITE = "only for composite models (sub-configs such as text + vision); MesaConfig has no sub-configs"
_NO_EXPERTS = "only for mixture-of-experts models; this family has no experts"
_KEEP_FP32 = (
    "no weight must stay in float32: the linear and mesa ops upcast to float32 for their states and solves themselves"
)
_CONVERSION = (
    "only for models whose older checkpoints use other weight names (a conversion mapping); this family has one "
    "weight layout"
)
UPSTREAM_SKIPS_NOT_APPLICABLE: dict[str, str] = {
    "test_attn_implementation_composite_models": _COMPOSITE,
    "test_can_set_attention_dynamically_composite_model": _COMPOSITE,
    "test_sdpa_can_dispatch_composite_models": _COMPOSITE,
    "test_internal_model_config_and_subconfig_are_same": _COMPOSITE,
    "test_flash_attn_2_can_dispatch_composite_models": _COMPOSITE + " (and needs flash-attn on CUDA)",
    "test_flash_attn_3_can_dispatch_composite_models": _COMPOSITE + " (and needs flash-attn 3 on CUDA)",
    "test_flash_attn_4_can_dispatch_composite_models": _COMPOSITE + " (and needs flash-attn 4 on CUDA)",
    "test_eager_matches_batched_and_grouped_inference": "grouped_mm is a mixture-of-experts kernel; no experts here",
    "test_moe_models_record_router_logits": _NO_EXPERTS,
    "test_output_router_logits_from_config": _NO_EXPERTS,
    "test_encoder_decoder_loss_no_double_shift": "only for encoder-decoder models; this family is decoder-only",
    "test_keep_in_fp32_modules": _KEEP_FP32,
    "test_keep_in_fp32_modules_exist": _KEEP_FP32,
    "test_keep_in_fp32_modules_strict_also_hardcode_fp32": _KEEP_FP32,
    "test_can_load_from_already_mapped_keys": _CONVERSION,
    "test_reverse_loading_mapping": _CONVERSION,
    "test_sliding_window_mask": "only for sliding-window attention; this family has none",
    "test_vision_axial_rope": "only for vision models' axial RoPE",
    "test_bc_cache_name_forward": (
        "checks the old cache names against the new one with an empty DynamicCache; this family's cache is a "
        "MesaCache (it holds linear and mesa states), which forward accepts under both names"
    ),
    "test_capture_outputs_decorator": (
        "checks how a model uses transformers' capture_outputs decorator; this family collects hidden states and "
        "attentions in its own forward (checked by test_hidden_states_output and test_attention_outputs)"
    ),
}
UPSTREAM_SKIPS_NOT_OFFERED: dict[str, str] = {
    "test_can_capture_specific_layers_hidden_states": (
        "choosing which layers' hidden states to return needs transformers' _can_record_outputs / capture_outputs "
        "machinery, which this family does not use: output_hidden_states=True returns every layer"
    ),
    "test_tp_plan_matches_params": "no tensor-parallel plan (base_model_tp_plan) is declared",
    "test_resize_position_vector_embeddings": (
        "the test configs use RoPE (no position table to resize); learned absolute positions "
        "(position_type='learned') do not implement resize_position_embeddings"
    ),
}
_ACCELERATOR = "needs a CUDA (or other accelerator) device; CI runs on CPU only"
_FLASH = "needs flash-attn on CUDA; CI runs on CPU only (the family offers eager and sdpa attention)"
UPSTREAM_SKIPS_NEEDS_HARDWARE: dict[str, str] = {
    "test_can_load_with_device_context_manager": _ACCELERATOR,
    "test_can_load_with_global_device_set": _ACCELERATOR,
    "test_cpu_offload": _ACCELERATOR,
    "test_disk_offload_bin": _ACCELERATOR,
    "test_disk_offload_safetensors": _ACCELERATOR,
    "test_flex_attention_with_grads": _ACCELERATOR,
    "test_sdpa_can_compile_dynamic": _ACCELERATOR,
    "test_sdpa_can_dispatch_on_flash": _ACCELERATOR,
    "test_model_parallelism": "needs two or more accelerators",
    "test_flash_attn_2_can_compile_with_attention_mask_None_without_graph_break": _FLASH,
    "test_flash_attn_2_fp32_ln": _FLASH,
    "test_flash_attn_2_from_config": _FLASH,
    "test_flash_attn_2_inference_equivalence": _FLASH,
    "test_flash_attn_2_inference_equivalence_right_padding": _FLASH,
    "test_flash_attn_3_from_config": _FLASH,
    "test_flash_attn_3_inference_equivalence": _FLASH,
    "test_flash_attn_3_inference_equivalence_right_padding": _FLASH,
    "test_flash_attn_4_from_config": _FLASH,
    "test_flash_attn_4_inference_equivalence": _FLASH,
    "test_flash_attn_4_inference_equivalence_right_padding": _FLASH,
    "test_flash_attn_kernels_inference_equivalence": "needs the kernels library and a CUDA device",
    "test_kernels_can_load_without_crashing": "needs the kernels library and a CUDA device",
    "test_flash_attn_kernels_mps_inference_equivalence": "needs an Apple MPS device",
    "test_resize_tokens_embeddings_with_deepspeed": "needs deepspeed (not installed) and a CUDA device",
    "test_resize_tokens_embeddings_with_deepspeed_multi_gpu": "needs deepspeed and several CUDA devices",
    "test_resize_embeddings_untied_with_deepspeed": "needs deepspeed (not installed) and a CUDA device",
    "test_resize_embeddings_untied_with_deepspeed_multi_gpu": "needs deepspeed and several CUDA devices",
    "test_torch_compile_for_training": "needs an accelerator, and RUN_SLOW=1 (marked @slow upstream)",
}
UPSTREAM_SKIPS: dict[str, str] = {
    **UPSTREAM_SKIPS_NOT_APPLICABLE,
    **UPSTREAM_SKIPS_NOT_OFFERED,
    **UPSTREAM_SKIPS_NEEDS_HARDWARE,
}
# The message each of those tests skips with (a part of it). A documented test that skips for another reason fails:
# e.g. test_bc_cache_name_forward also skips when forward takes no `cache` argument, which would be a gap.
_FLASH_MESSAGE = "test requires Flash Attention"
UPSTREAM_SKIP_MESSAGES: dict[str, str] = {
    "test_attn_implementation_composite_models": "Model is not a composite model",
    "test_can_set_attention_dynamically_composite_model": "This model is not composite",
    "test_sdpa_can_dispatch_composite_models": "does not support SDPA",
    "test_internal_model_config_and_subconfig_are_same": "No subconfigs",
    "test_flash_attn_2_can_dispatch_composite_models": _FLASH_MESSAGE,
    "test_flash_attn_3_can_dispatch_composite_models": _FLASH_MESSAGE,
    "test_flash_attn_4_can_dispatch_composite_models": _FLASH_MESSAGE,
    "test_eager_matches_batched_and_grouped_inference": "does not support grouped_mm",
    "test_moe_models_record_router_logits": "no sparse experts",
    "test_output_router_logits_from_config": "no `output_router_logits`",
    "test_encoder_decoder_loss_no_double_shift": "No sequence-to-sequence language modeling head",
    "test_keep_in_fp32_modules": "no _keep_in_fp32_modules",
    "test_keep_in_fp32_modules_exist": "no _keep_in_fp32_modules",
    "test_keep_in_fp32_modules_strict_also_hardcode_fp32": "No `_keep_in_fp32_modules_strict`",
    "test_can_load_from_already_mapped_keys": "No conversion found",
    "test_reverse_loading_mapping": "No conversion found",
    "test_sliding_window_mask": "does not support sliding window",
    "test_vision_axial_rope": "no axial RoPE",
    "test_bc_cache_name_forward": "non standard Cache",
    "test_capture_outputs_decorator": "No usage of the `capture_outputs` decorator",
    "test_can_capture_specific_layers_hidden_states": "Cannot capture hidden states",
    "test_tp_plan_matches_params": "does not have a TP plan",
    "test_resize_position_vector_embeddings": "does not have position embeddings",
    "test_can_load_with_device_context_manager": "requires accelerator",
    "test_can_load_with_global_device_set": "requires accelerator",
    "test_cpu_offload": "requires accelerator",
    "test_disk_offload_bin": "requires accelerator",
    "test_disk_offload_safetensors": "requires accelerator",
    "test_flex_attention_with_grads": "requires accelerator",
    "test_sdpa_can_compile_dynamic": "requires accelerator",
    "test_sdpa_can_dispatch_on_flash": "requires accelerator",
    "test_model_parallelism": "requires multiple accelerators",
    "test_flash_attn_2_can_compile_with_attention_mask_None_without_graph_break": _FLASH_MESSAGE,
    "test_flash_attn_2_fp32_ln": _FLASH_MESSAGE,
    "test_flash_attn_2_from_config": _FLASH_MESSAGE,
    "test_flash_attn_2_inference_equivalence": _FLASH_MESSAGE,
    "test_flash_attn_2_inference_equivalence_right_padding": _FLASH_MESSAGE,
    "test_flash_attn_3_from_config": _FLASH_MESSAGE + " 3",
    "test_flash_attn_3_inference_equivalence": _FLASH_MESSAGE + " 3",
    "test_flash_attn_3_inference_equivalence_right_padding": _FLASH_MESSAGE + " 3",
    "test_flash_attn_4_from_config": _FLASH_MESSAGE + " 4",
    "test_flash_attn_4_inference_equivalence": _FLASH_MESSAGE + " 4",
    "test_flash_attn_4_inference_equivalence_right_padding": _FLASH_MESSAGE + " 4",
    "test_flash_attn_kernels_inference_equivalence": "requires the kernels library",
    "test_kernels_can_load_without_crashing": "requires the kernels library",
    "test_flash_attn_kernels_mps_inference_equivalence": "requires MPS",
    "test_resize_tokens_embeddings_with_deepspeed": "requires deepspeed",
    "test_resize_tokens_embeddings_with_deepspeed_multi_gpu": "requires deepspeed",
    "test_resize_embeddings_untied_with_deepspeed": "requires deepspeed",
    "test_resize_embeddings_untied_with_deepspeed_multi_gpu": "requires deepspeed",
    "test_torch_compile_for_training": "test is slow",
}
assert set(UPSTREAM_SKIP_MESSAGES) == set(UPSTREAM_SKIPS), set(UPSTREAM_SKIP_MESSAGES) ^ set(UPSTREAM_SKIPS)


def not_applicable_for(mix_name: str) -> dict[str, str]:
    return {**NOT_APPLICABLE, **NOT_APPLICABLE_PER_MIX.get(mix_name, {})}


# Upstream tests that pass without checking anything when a model class lacks a capability (they `continue` past the
# class instead of skipping): test name -> (class attribute that must be true, what it means). Here they fail instead.
_GRADIENT_CHECKPOINTING = (
    "supports_gradient_checkpointing",
    "gradient checkpointing is not supported (supports_gradient_checkpointing=False), so this upstream test would "
    "pass without checking anything",
)
REQUIRED_CAPABILITIES: dict[str, tuple[str, str]] = {
    "test_gradient_checkpointing_backward_compatibility": _GRADIENT_CHECKPOINTING,
    "test_gradient_checkpointing_enable_disable": _GRADIENT_CHECKPOINTING,
    "test_peft_gradient_checkpointing_enable_disable": _GRADIENT_CHECKPOINTING,
    "test_training_gradient_checkpointing": _GRADIENT_CHECKPOINTING,
    "test_training_gradient_checkpointing_use_reentrant_false": _GRADIENT_CHECKPOINTING,
    "test_training_gradient_checkpointing_use_reentrant_true": _GRADIENT_CHECKPOINTING,
}


def is_test_or_expansion(test: str, name: str) -> bool:
    """`test` is `name`, or a test `parameterized` expanded from it (`<name>_<index>_<params>`)."""
    return test == name or (test.startswith(name + "_") and test[len(name) + 1 : len(name) + 2].isdigit())


def _not_applicable(reason: str):
    @unittest.skip(f"does not apply to the mesa family: {reason}")
    def test(self):
        pass

    return test


if _UNAVAILABLE is not None:

    class TestUpstreamTestsAvailable(unittest.TestCase):
        def test_upstream_tests_fetched(self):
            if os.environ.get("MESA_LM_SKIP_UPSTREAM_TESTS") == "1":
                self.skipTest(f"MESA_LM_SKIP_UPSTREAM_TESTS=1: {_UNAVAILABLE}")
            self.fail(f"transformers' common tests are unavailable: {_UNAVAILABLE}")

else:
    ModelTesterMixin = _modeling_common.ModelTesterMixin
    ConfigTester = _configuration_common.ConfigTester
    ids_tensor = _modeling_common.ids_tensor
    torch_device = _modeling_common.torch_device

    class MesaModelTester:
        """Small configs and inputs for `ModelTesterMixin` (the conventions of transformers' decoder testers)."""

        def __init__(
            self,
            parent,
            mix: dict,
            batch_size: int = 13,
            seq_length: int = 7,
            is_training: bool = True,
            use_input_mask: bool = True,
            use_labels: bool = True,
            vocab_size: int = 99,
            hidden_size: int = 32,
            num_attention_heads: int = 2,
            intermediate_size: int = 37,
            max_position_embeddings: int = 512,
            chunk_size: int = 4,  # < seq_length: the chunkwise linear and mesa ops cross a chunk boundary
            initializer_range: float = 0.02,
            pad_token_id: int = 0,
            bos_token_id: int = 1,
            eos_token_id: int = 2,
        ):
            self.parent = parent
            self.mix = dict(mix)
            self.batch_size = batch_size
            self.seq_length = seq_length
            self.is_training = is_training
            self.use_input_mask = use_input_mask
            self.use_labels = use_labels
            self.vocab_size = vocab_size
            self.hidden_size = hidden_size
            self.num_hidden_layers = len(mix["mixer_types"])
            self.num_attention_heads = num_attention_heads
            self.intermediate_size = intermediate_size
            self.max_position_embeddings = max_position_embeddings
            self.chunk_size = chunk_size
            self.initializer_range = initializer_range
            self.pad_token_id = pad_token_id
            self.bos_token_id = bos_token_id
            self.eos_token_id = eos_token_id

        def get_config(self) -> MesaConfig:
            return MesaConfig(
                vocab_size=self.vocab_size,
                hidden_size=self.hidden_size,
                num_attention_heads=self.num_attention_heads,
                intermediate_size=self.intermediate_size,
                max_position_embeddings=self.max_position_embeddings,
                chunk_size=self.chunk_size,
                initializer_range=self.initializer_range,
                pad_token_id=self.pad_token_id,
                bos_token_id=self.bos_token_id,
                eos_token_id=self.eos_token_id,
                **self.mix,
            )

        def prepare_config_and_inputs(self):
            input_ids = ids_tensor([self.batch_size, self.seq_length], self.vocab_size)
            input_mask = None
            if self.use_input_mask:  # right padding of different lengths, as transformers' decoder testers use
                input_mask = torch.tril(torch.ones_like(input_ids)).to(torch_device)
            token_labels = ids_tensor([self.batch_size, self.seq_length], self.vocab_size) if self.use_labels else None
            return self.get_config(), input_ids, input_mask, token_labels

        def prepare_config_and_inputs_for_common(self):
            config, input_ids, input_mask, _ = self.prepare_config_and_inputs()
            return config, {"input_ids": input_ids, "attention_mask": input_mask}

        def create_and_check_model(self, config, input_ids, input_mask, token_labels):
            model = MesaModel(config).to(torch_device).eval()
            with torch.no_grad():
                result = model(input_ids, attention_mask=input_mask)
                result = model(input_ids)
            self.parent.assertEqual(
                result.last_hidden_state.shape, (self.batch_size, self.seq_length, self.hidden_size)
            )

        def create_and_check_causal_lm(self, config, input_ids, input_mask, token_labels):
            model = MesaForCausalLM(config).to(torch_device).eval()
            with torch.no_grad():
                result = model(input_ids, attention_mask=input_mask, labels=token_labels)
            self.parent.assertEqual(result.logits.shape, (self.batch_size, self.seq_length, self.vocab_size))
            self.parent.assertTrue(torch.isfinite(result.loss))

    from transformers.models.auto import modeling_auto

    class _MesaUpstreamTests(ModelTesterMixin):
        """Shared body of the four test classes; a subclass names its mix."""

        mix_name: str = ""
        all_model_classes = (MesaModel, MesaForCausalLM)
        pipeline_model_mapping = {"feature-extraction": MesaModel, "text-generation": MesaForCausalLM}
        # The model is new (2025-26): upstream checks `_init_weights` covers every parameter only for models it dates
        # from 2023 on (by a copyright line the config file does not have); opt in.
        test_can_init_all_missing_weights_before_2023 = True
        # Runs upstream's compiled-vs-eager training check (it needs an accelerator and RUN_SLOW=1).
        _torch_compile_train_cls = MesaForCausalLM

        @classmethod
        def setUpClass(cls):
            super().setUpClass()
            # Tiny tensors: one thread is 10-100x faster than two on a shared 2-core machine (thread hand-offs).
            cls._saved_threads = torch.get_num_threads()
            torch.set_num_threads(1)

        @classmethod
        def tearDownClass(cls):
            torch.set_num_threads(cls._saved_threads)
            super().tearDownClass()

        def setUp(self):
            # Upstream tests recognise a base model and a causal-LM head by class name in transformers' static
            # tables, which list only in-library models. Name ours there for the duration of each test, as an
            # in-library model would be (mesa_lm registers the same classes with AutoModel / AutoModelForCausalLM).
            for table, name in (
                (modeling_auto.MODEL_MAPPING_NAMES, "MesaModel"),
                (modeling_auto.MODEL_FOR_CAUSAL_LM_MAPPING_NAMES, "MesaForCausalLM"),
            ):
                patcher = mock.patch.dict(table, {"mesa": name})
                patcher.start()
                self.addCleanup(patcher.stop)
            self.model_tester = MesaModelTester(self, MIXES[self.mix_name])
            self.config_tester = ConfigTester(
                self,
                config_class=MesaConfig,
                hidden_size=36,
                num_attention_heads=2,
                chunk_size=3,
                mixer_types=list(MIXES[self.mix_name]["mixer_types"]),
            )

        def test_model(self):
            self.model_tester.create_and_check_model(*self.model_tester.prepare_config_and_inputs())

        def test_causal_lm(self):
            self.model_tester.create_and_check_causal_lm(*self.model_tester.prepare_config_and_inputs())

        def test_attentions_of_every_layer(self):
            """Upstream's test_attention_outputs checks the number of entries but only the first one's shape; here every
            layer (softmax, linear or mesa) must return its (B, heads, T, T) token-mixing weights."""
            config, inputs = self.model_tester.prepare_config_and_inputs_for_common()
            t = self.model_tester
            for model_class in self.all_model_classes:
                model = model_class(config).to(torch_device).eval()
                with torch.no_grad():
                    attentions = model(**inputs, output_attentions=True).attentions
                self.assertEqual(len(attentions), t.num_hidden_layers)
                for layer, (mixer, weights) in enumerate(zip(config.mixer_types, attentions)):
                    with self.subTest(model=model_class.__name__, layer=layer, mixer=mixer):
                        self.assertIsNotNone(weights, f"layer {layer} ({mixer}) returned no attention weights")
                        self.assertEqual(
                            tuple(weights.shape), (t.batch_size, t.num_attention_heads, t.seq_length, t.seq_length)
                        )

        # ConfigTester's checks, one test each so a failure names the check.
        def test_config_common_properties(self):
            self.config_tester.create_and_test_config_common_properties()

        def test_config_to_json_string(self):
            self.config_tester.create_and_test_config_to_json_string()

        def test_config_to_json_file(self):
            self.config_tester.create_and_test_config_to_json_file()

        def test_config_from_and_save_pretrained(self):
            self.config_tester.create_and_test_config_from_and_save_pretrained()

        def test_config_from_and_save_pretrained_subfolder(self):
            self.config_tester.create_and_test_config_from_and_save_pretrained_subfolder()

        def test_config_from_and_save_pretrained_composite(self):
            self.config_tester.create_and_test_config_from_and_save_pretrained_composite()

        def test_config_with_num_labels(self):
            self.config_tester.create_and_test_config_with_num_labels()

        def test_config_arguments_init(self):
            self.config_tester.check_config_arguments_init()

        def test_config_from_pretrained_custom_kwargs(self):
            self.config_tester.create_and_test_config_from_pretrained_custom_kwargs()

        def test_config_can_be_init_without_params(self):
            self.config_tester.check_config_can_be_init_without_params()

        def test_config_run_common_tests(self):
            self.config_tester.run_common_tests()

    def _requiring(test, attribute: str, meaning: str):
        @functools.wraps(test)
        def wrapped(self, *args, **kwargs):
            lacking = [c.__name__ for c in self.all_model_classes if not getattr(c, attribute, False)]
            if lacking:
                self.fail(f"{', '.join(lacking)}: {meaning}")
            return test(self, *args, **kwargs)

        return wrapped

    def _with_skips(cls):
        tests = [attr for attr in dir(cls) if attr.startswith("test_")]
        for name, (attribute, meaning) in REQUIRED_CAPABILITIES.items():
            if name not in tests:  # not in this transformers version
                continue
            setattr(cls, name, _requiring(getattr(cls, name), attribute, meaning))
        for name, reason in not_applicable_for(cls.mix_name).items():
            matched = [test for test in tests if is_test_or_expansion(test, name)]
            if not matched:  # absent from this transformers version (older, or renamed): nothing to skip
                continue
            for test in matched:
                setattr(cls, test, _not_applicable(reason))
        return cls

    @_with_skips
    class MesaAllSoftmaxUpstreamTest(_MesaUpstreamTests, unittest.TestCase):
        mix_name = "softmax"

    @_with_skips
    class MesaAllLinearUpstreamTest(_MesaUpstreamTests, unittest.TestCase):
        mix_name = "linear"

    @_with_skips
    class MesaAllMesaUpstreamTest(_MesaUpstreamTests, unittest.TestCase):
        mix_name = "mesa"

    @_with_skips
    class MesaHybridUpstreamTest(_MesaUpstreamTests, unittest.TestCase):
        mix_name = "hybrid"


def test_docs_list_every_skip():
    """Every upstream test skipped here as not applicable is named, with its reason, in docs/compatibility.md."""
    if not _DOC.is_file():
        pytest.fail(f"{_DOC} is missing")
    text = _DOC.read_text()
    if _DOC_SECTION not in text:
        pytest.fail(f"{_DOC.name} has no section {_DOC_SECTION!r}")
    section = text.split(_DOC_SECTION, 1)[1]
    section = re.split(r"\n## ", section, maxsplit=1)[0]
    names = set(UPSTREAM_SKIPS) | set(NOT_APPLICABLE)
    for per_mix in NOT_APPLICABLE_PER_MIX.values():
        names |= set(per_mix)
    missing = sorted(name for name in names if f"`{name}`" not in section)
    assert not missing, f"skipped upstream tests not listed in docs/compatibility.md: {missing}"
