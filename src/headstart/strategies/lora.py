"""lora: low-rank adapters on the attention projections; the pretrained weights stay frozen.

Hu et al. (2021): W + (alpha / r) B A with A, B of rank r is enough to adapt a transformer,
and trains ~1% of its parameters. We fit the head on cached features first (as lp-ft), then
train the adapters and the head, and finally merge the adapters into the weights, so the
saved model is a plain model: predict and export need no PEFT.
"""
from __future__ import annotations

from torch import nn

from ..errors import HeadstartError
from ..heads import PROBE_C_GRID
from .base import FitContext, register_strategy
from .backbone_training import HeadThenAllLayers

# Names of attention projection layers across common architectures, in order of preference:
# BERT/MiniLM/RoBERTa, DistilBERT, Llama-style and most decoders, timm ViT (fused q/k/v).
ATTENTION_TARGETS = (("query", "key", "value"), ("q_lin", "k_lin", "v_lin"),
                     ("q_proj", "k_proj", "v_proj"), ("qkv",))
RANK = 8
ALPHA = 16
DROPOUT = 0.1


def attention_targets(model: nn.Module) -> list[str]:
    linear_names = {name.rsplit(".", 1)[-1] for name, m in model.named_modules() if isinstance(m, nn.Linear)}
    for names in ATTENTION_TARGETS:
        found = [n for n in names if n in linear_names]
        if found:
            return found
    raise HeadstartError("lora needs a transformer backbone with attention projections "
                         f"(layers named like {', '.join(n[0] for n in ATTENTION_TARGETS)}); none found",
                         hint="use --strategy finetune or lp-ft for this backbone")


@register_strategy
class Lora(HeadThenAllLayers):
    name = "lora"
    default_epochs = 5
    default_lr = 1e-3
    default_augment = "light"
    description = "tuned linear probe, then LoRA adapters (r=8) on the attention projections + head; merged"
    head_c_grid = PROBE_C_GRID
    lr_spread = 1.0
    schedule = "cosine"
    requires_attention = True  # text transformers; timm ViTs (fused qkv) too, CNNs not

    def prepare_backbone(self, classifier, ctx: FitContext) -> None:
        from peft import LoraConfig, get_peft_model

        backbone = classifier.backbone
        backbone.set_trainable(False)
        config = LoraConfig(r=RANK, lora_alpha=ALPHA, lora_dropout=DROPOUT,
                            target_modules=attention_targets(backbone.model))
        backbone.model = get_peft_model(backbone.model, config)  # adapters trainable, rest frozen
        adapters = [p for p in backbone.model.parameters() if p.requires_grad]
        backbone.set_param_groups([adapters])  # one rate for every adapter
        for p in classifier.head.parameters():
            p.requires_grad_(True)

    def finish_backbone(self, classifier) -> dict:
        backbone = classifier.backbone
        trainable = sum(p.numel() for p in backbone.model.parameters() if p.requires_grad)
        total = sum(p.numel() for p in backbone.model.parameters())
        backbone.model = backbone.model.merge_and_unload()  # W += (alpha/r) B A, adapters gone
        from ..zoo.text_backbones import layer_groups
        backbone.set_param_groups(layer_groups(backbone.model))
        backbone.set_trainable(False)
        return {"lora_rank": RANK, "lora_trainable_params": trainable,
                "lora_trainable_fraction": round(trainable / max(total, 1), 5)}
