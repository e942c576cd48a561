"""MesaConfig: defaults, presets, the layer_types view, round trips and one clear error per bad field."""

import pytest

from mesa_lm import PRESETS, MesaConfig


def test_defaults_fill_derived_sizes():
    config = MesaConfig(hidden_size=64, num_attention_heads=4, mixer_types=["softmax", "mesa", "linear"])
    assert config.num_hidden_layers == 3
    assert config.head_dim == 16 and config.value_head_dim == 16
    assert config.intermediate_size == 176  # SwiGLU: 8/3 * 64 rounded up to a multiple of 8
    assert config.layer_types == ["full_attention", "linear_attention", "linear_attention"]
    assert MesaConfig(hidden_size=64, mlp_type="gelu").intermediate_size == 256


@pytest.mark.parametrize("name", sorted(PRESETS))
def test_every_preset_builds_and_round_trips(name, tmp_path):
    config = MesaConfig.from_preset(name)
    config.save_pretrained(tmp_path)
    loaded = MesaConfig.from_pretrained(tmp_path)
    assert loaded.to_dict() == config.to_dict()
    assert loaded.mixer_types == PRESETS[name]["mixer_types"]


def test_preset_overrides_and_paper_values():
    config = MesaConfig.from_preset("hybrid-mesa", num_attention_heads=2)
    assert config.mixer_types == ["softmax", "mesa"] and config.num_attention_heads == 2
    linear1 = MesaConfig.from_preset("linear-1")
    assert (linear1.hidden_size, linear1.num_attention_heads, linear1.head_dim) == (40, 2, 20)
    assert linear1.activation_clip == 4.0 and linear1.initializer_range == 0.0002
    assert (linear1.read_in, linear1.read_out, linear1.vocab_size) == ("identity", "slice", None)


def test_unknown_preset():
    with pytest.raises(ValueError, match="unknown preset 'hybrid-mesaa'.*available presets"):
        MesaConfig.from_preset("hybrid-mesaa")


BAD_FIELDS = [
    (dict(mixer_types=["softmax", "mesaa"]), r"mixer_types\[1\]='mesaa'.*allowed mixers"),
    (dict(mixer_types=["softmax", "mesa"], num_hidden_layers=3), r"mixer_types=.*has 2 entries but num_hidden_layers is 3"),
    (dict(num_hidden_layers=0), "num_hidden_layers=0"),
    (dict(hidden_size=30, num_attention_heads=4), r"num_attention_heads=4.*must divide hidden_size=30"),
    (dict(hidden_size=0), "hidden_size=0"),
    (dict(num_attention_heads=-1), "num_attention_heads=-1"),
    (dict(head_dim=0), "head_dim=0"),
    (dict(value_head_dim=-3), "value_head_dim=-3"),
    (dict(head_dim=7, position_type="rope"), "head_dim=7.*even"),
    (dict(mlp_type="relu"), "mlp_type='relu'.*allowed values"),
    (dict(norm_type="batchnorm"), "norm_type='batchnorm'"),
    (dict(position_type="alibi"), "position_type='alibi'"),
    (dict(position_type="concat", position_dim=0), "position_dim=0"),
    (dict(mesa_lambda_type="full"), "mesa_lambda_type='full'"),
    (dict(mesa_lambda_lower_bound=0.0), "mesa_lambda_lower_bound=0.0.*must be > 0"),
    (dict(mesa_lambda_lower_bound=-1.0), "mesa_lambda_lower_bound=-1.0"),
    (dict(mesa_lambda_init=0.0), "mesa_lambda_init=0.0"),
    (dict(mesa_lambda_type="diagonal", mesa_lambda_init=0.2), "mesa_lambda_init=0.2.*exceed mesa_lambda_lower_bound"),
    (dict(mesa_gate="always"), "mesa_gate='always'"),
    (dict(rope_theta=0.0), "rope_theta=0.0.*must be > 0"),
    (dict(rope_theta=float("nan")), "rope_theta=nan.*finite"),
    (dict(norm_eps=float("inf")), "norm_eps=inf.*finite"),
    (dict(initializer_range=float("nan")), "initializer_range=nan.*finite"),
    (dict(activation_clip=float("inf")), "activation_clip=inf.*finite"),
    (dict(num_key_value_heads=0), "num_key_value_heads=0.*positive integer"),
    (dict(mesa_conv_size=1), "mesa_conv_size=1"),
    (dict(linear_feature_map="relu"), "linear_feature_map='relu'"),
    (dict(linear_dpfp_nu=0), "linear_dpfp_nu=0"),
    (dict(chunk_size=0), "chunk_size=0"),
    (dict(vocab_size=0), "vocab_size=0"),
    (dict(intermediate_size=0), "intermediate_size=0"),
    (dict(norm_eps=0.0), "norm_eps=0.0"),
    (dict(initializer_range=-0.1), "initializer_range=-0.1"),
    (dict(activation_clip=0.0), "activation_clip=0.0"),
    (dict(max_position_embeddings=0), "max_position_embeddings=0"),
    (dict(read_in="conv"), "read_in='conv'"),
    (dict(read_out="mean"), "read_out='mean'"),
    (dict(read_in="identity", input_dim=10, hidden_size=40, num_attention_heads=2), "input_dim=10.*hidden_size=40"),
    (dict(read_out="slice", output_dim=50, hidden_size=40, num_attention_heads=2), "output_dim=50.*<= hidden_size=40"),
    (dict(input_dim=0), "input_dim=0"),
]


@pytest.mark.parametrize("kwargs,message", BAD_FIELDS, ids=[str(k) for k, _ in BAD_FIELDS])
def test_every_invalid_field_raises_a_clear_error(kwargs, message):
    with pytest.raises(ValueError, match=message) as error:
        MesaConfig(**kwargs)
    assert str(error.value).startswith("MesaConfig.")
    assert "\n" not in str(error.value)
