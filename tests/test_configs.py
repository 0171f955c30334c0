"""Every shipped configuration parses and validates (paper.yaml is documented, not run here)."""

from pathlib import Path

import pytest
import yaml

from wvlp.modeling import WVLPConfig
from wvlp.train.config import load_config

CONFIGS = Path(__file__).resolve().parent.parent / "train" / "configs"


# TrainingArguments refuses bf16 on a machine without a bf16 GPU, so the CPU test parses paper.yaml without it.
CPU_PARSE = {"paper.yaml": ["training.bf16=false"]}


@pytest.mark.parametrize("name", ["tiny.yaml", "fashion-mnist.yaml", "fashion-mnist-bridge.yaml", "paper.yaml"])
def test_run_configs_parse(name):
    config = load_config(CONFIGS / name, CPU_PARSE.get(name, []))
    assert config.model.init in {"tiny", "default", "pretrained", "paper"}
    assert config.training.remove_unused_columns is False
    if config.model.init != "paper":  # paper's text sizes come from its BERT checkpoint: next test
        WVLPConfig(**config.model.config)  # YAML ints in float fields included: they are `float | int`


def test_paper_config_describes_the_reference_scale():
    config = load_config(CONFIGS / "paper.yaml", CPU_PARSE["paper.yaml"])
    model = WVLPConfig(
        text_config=dict(num_hidden_layers=12, hidden_size=768, num_attention_heads=12, intermediate_size=3072),
        **config.model.config,
    )
    pretraining = model.pretraining_config
    assert pretraining.queue_size == 65536 and pretraining.momentum == 0.995 and model.fusion_layer == 6
    assert config.training.per_device_train_batch_size * 8 == 512
    assert yaml.safe_load((CONFIGS / "paper.yaml").read_text())["training"]["bf16"] is True


@pytest.mark.parametrize("name", ["accelerate_ddp.yaml", "accelerate_fsdp.yaml"])
def test_accelerate_configs_are_valid(name):
    from accelerate.commands.config.config_args import ClusterConfig

    raw = yaml.safe_load((CONFIGS / name).read_text())
    cluster = ClusterConfig(**raw)
    assert cluster.num_processes >= 8 and not cluster.use_cpu


def test_yaml_integers_fill_float_fields_and_flat_overrides_fold_in():
    config = load_config(CONFIGS / "tiny.yaml", ["model.config.temperature=0", "model.config.itm_loss_weight=0"])
    with pytest.raises(ValueError, match="temperature=0"):  # the range check, not a type error
        WVLPConfig(**config.model.config)
    config = load_config(CONFIGS / "tiny.yaml", ["model.config.itm_loss_weight=0", "model.config.alpha=1"])
    pretraining = WVLPConfig(**config.model.config).pretraining_config
    assert pretraining.itm_loss_weight == 0 and pretraining.alpha == 1 and pretraining.imc_loss_weight == 1.0


def test_bridge_config_names_the_lm_by_a_stable_id():
    config = load_config(CONFIGS / "fashion-mnist-bridge.yaml")
    assert config.model.config["language_model_id"] == "HuggingFaceTB/SmolLM2-135M-Instruct"
    assert "language_model_path" not in config.model.config
