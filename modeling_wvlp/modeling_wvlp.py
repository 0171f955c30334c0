"""WVLP: a vision-language model pre-trained from category labels and LLM-written descriptions (PiTL).

Layout follows transformers model files: outputs -> PreTrainedModel -> towers -> model -> heads; the text/fusion
blocks live in `modeling_text.py` (shared with the prompt bridge and the P-Former).
The text tower is unified with the multimodal encoder: one BERT-style stack that runs as a plain text encoder, or,
in fusion mode, with cross-attention to image tokens switched on from `config.fusion_layer` upward.
"""

import copy
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn
from transformers import AutoModel, PreTrainedModel
from transformers.modeling_outputs import BaseModelOutputWithPooling
from transformers.utils import ModelOutput

from .configuration_wvlp import WVLPConfig, WVLPEfficientNetLiteConfig
from .losses import (
    clip_loss,
    contrastive_loss,
    gather_features,
    itm_loss,
    mlm_loss,
    positive_targets,
    sample_hard_negatives,
    world_info,
)
from .modeling_bridge import (
    WVLPPromptBridge,
    freeze_language_model,
    generate_from_prompts,
    load_language_model,
    load_lm_tokenizer,
    prompt_lm_loss,
)
from .modeling_efficientnet_lite import WVLPEfficientNetLiteModel, init_efficientnet_weights
from .modeling_text import (
    WVLPMLMHead,
    WVLPTemperature,
    WVLPTextOutput,
    WVLPTextTower,
    init_text_weights,
)


@dataclass
class WVLPOutput(ModelOutput):
    """Output of `WVLPModel.forward`: similarity logits and L2-normalised embeddings of both modalities."""

    loss: torch.FloatTensor | None = None
    logits_per_image: torch.FloatTensor | None = None
    logits_per_text: torch.FloatTensor | None = None
    image_embeds: torch.FloatTensor | None = None
    text_embeds: torch.FloatTensor | None = None
    vision_model_output: BaseModelOutputWithPooling | None = None
    text_model_output: WVLPTextOutput | None = None

    def to_tuple(self) -> tuple:
        return tuple(v.to_tuple() if isinstance(v, ModelOutput) else v for v in self.values())


@dataclass
class WVLPPreTrainingOutput(ModelOutput):
    """Output of `WVLPForPreTraining.forward`: the weighted total and every loss term by name."""

    loss: torch.FloatTensor | None = None
    itc_loss: torch.FloatTensor | None = None
    itm_loss: torch.FloatTensor | None = None
    mlm_loss: torch.FloatTensor | None = None
    imc_loss: torch.FloatTensor | None = None
    knowledge_loss: torch.FloatTensor | None = None
    generation_loss: torch.FloatTensor | None = None
    pformer_alignment_loss: torch.FloatTensor | None = None
    logits_per_image: torch.FloatTensor | None = None
    itm_logits: torch.FloatTensor | None = None


LOSS_TERMS = ("itc", "itm", "mlm", "imc", "knowledge", "generation", "pformer_alignment")


class WVLPPreTrainedModel(PreTrainedModel):
    config: WVLPConfig
    base_model_prefix = "wvlp"
    main_input_name = "pixel_values"
    input_modalities = ("image", "text")
    supports_gradient_checkpointing = True
    _no_split_modules = ["WVLPTextLayer"]
    _supports_sdpa = True
    # Every loss is a per-batch mean: the Trainer must scale it for gradient accumulation itself.
    accepts_loss_kwargs = False

    @torch.no_grad()
    def _init_weights(self, module: nn.Module) -> None:
        if isinstance(module, (nn.Conv2d, nn.BatchNorm2d)):
            init_efficientnet_weights(module)
        elif not init_text_weights(module, self.config.initializer_range, self.config.temperature):
            super()._init_weights(module)


class WVLPVisionTower(nn.Module):
    """Image tower: the built-in EfficientNet-Lite or any transformers vision backbone; yields tokens + pooled token."""

    def __init__(self, config: WVLPConfig):
        super().__init__()
        vision_config = config.vision_config
        # By model_type: remote code may load the config module twice, so classes need not be identical.
        if vision_config.model_type == WVLPEfficientNetLiteConfig.model_type:
            self.backbone = WVLPEfficientNetLiteModel(vision_config)
        else:
            try:  # a pooler nobody uses would leave DDP with unused parameters
                self.backbone = AutoModel.from_config(vision_config, add_pooling_layer=False)
            except TypeError:
                self.backbone = AutoModel.from_config(vision_config)

    def forward(self, pixel_values: torch.Tensor) -> BaseModelOutputWithPooling:
        output = self.backbone(pixel_values=pixel_values)
        tokens = output.last_hidden_state
        if tokens.dim() == 4:  # convolutional backbones return (B, C, H, W)
            tokens = tokens.flatten(2).transpose(1, 2)
        pooled = getattr(output, "pooler_output", None)
        if pooled is None:
            pooled = tokens.mean(dim=1)
        return BaseModelOutputWithPooling(last_hidden_state=tokens, pooler_output=pooled.reshape(tokens.shape[0], -1))


class WVLPModel(WVLPPreTrainedModel):
    """The published model: towers, projections, temperature, ITM and MLM heads."""

    _tied_weights_keys = {"mlm_head.decoder.weight": "text_model.embeddings.word_embeddings.weight"}

    def __init__(self, config: WVLPConfig):
        super().__init__(config)
        text_hidden = config.text_config.hidden_size
        self.vision_model = WVLPVisionTower(config)
        self.text_model = WVLPTextTower(config)
        self.vision_proj = nn.Linear(config.vision_hidden_size, config.embed_dim)
        self.text_proj = nn.Linear(text_hidden, config.embed_dim)
        self.temp = WVLPTemperature(config.temperature, config.temperature_min, config.temperature_max)
        self.itm_head = nn.Linear(text_hidden, 2)
        self.mlm_head = WVLPMLMHead(config.text_config)
        # Image -> soft prompts for a frozen LM (P-Former stage 2); absent unless config.prompt_bridge.
        self.prompt_bridge = WVLPPromptBridge(config) if config.prompt_bridge else None
        self._language_model = None
        self.post_init()

    def get_input_embeddings(self) -> nn.Embedding:
        return self.text_model.embeddings.word_embeddings

    def get_output_embeddings(self) -> nn.Linear:
        return self.mlm_head.decoder

    def temperature(self) -> torch.Tensor:
        """The learnable temperature, clamped to the configured range."""
        return self.temp()

    def get_image_features(self, pixel_values: torch.Tensor) -> BaseModelOutputWithPooling:
        """Image tokens in `last_hidden_state`; the projected, L2-normalised embedding in `pooler_output`."""
        output = self.vision_model(pixel_values)
        output.pooler_output = F.normalize(self.vision_proj(output.pooler_output), dim=-1)
        return output

    def get_text_features(self, input_ids: torch.Tensor, attention_mask: torch.Tensor | None = None) -> WVLPTextOutput:
        """Text-mode hidden states; the projected, L2-normalised embedding in `pooler_output`."""
        output = self.text_model.encode(input_ids, attention_mask)
        output.pooler_output = F.normalize(self.text_proj(output.pooler_output), dim=-1)
        return output

    def get_image_prompts(
        self, pixel_values: torch.Tensor | None = None, image_tokens: torch.Tensor | None = None
    ) -> torch.Tensor:
        """(B, K, bridge_prompt_dim) soft prompts of the images for the frozen LM (needs `config.prompt_bridge`)."""
        if self.prompt_bridge is None:
            raise ValueError("this model has no image-to-prompt bridge: build it with config.prompt_bridge=True")
        if image_tokens is None:
            if pixel_values is None:
                raise ValueError("get_image_prompts needs pixel_values or image_tokens")
            image_tokens = self.vision_model(pixel_values).last_hidden_state
        return self.prompt_bridge(image_tokens)

    def attach_language_model(self, language_model: nn.Module, tokenizer=None) -> "WVLPModel":
        """Attaches the frozen LM (and its tokenizer) by reference: never a submodule, never saved or optimised."""
        object.__setattr__(self, "_language_model", freeze_language_model(language_model))
        if tokenizer is not None:
            object.__setattr__(self, "_lm_tokenizer", tokenizer)
        return self

    def get_language_model(self) -> nn.Module:
        """The attached frozen LM, loaded from `config.language_model_path` on first use when none is attached."""
        if self._language_model is None:
            self.attach_language_model(load_language_model(self.config.language_model_path))
        return self._language_model

    @torch.no_grad()
    def generate_description(
        self,
        pixel_values: torch.Tensor | None = None,
        images=None,
        language_model: nn.Module | None = None,
        tokenizer=None,
        max_new_tokens: int = 32,
        do_sample: bool = False,
        image_processor=None,
        **generate_kwargs,
    ) -> list[str]:
        """Describes each image in words: bridge prompts -> the frozen LM's `generate(inputs_embeds=...)`.

        Give `pixel_values` (B, 3, H, W) or `images` (PIL/numpy, preprocessed by `image_processor`, by default a
        `WVLPImageProcessor` at the tower's resolution). The LM and its tokenizer default to the attached ones, else
        are loaded from `config.language_model_path` (the LM is not part of the saved WVLP weights).
        """
        if (pixel_values is None) == (images is None):
            raise ValueError("generate_description needs exactly one of pixel_values or images")
        if images is not None:
            if image_processor is None:
                from .image_processing_wvlp import WVLPImageProcessor

                image_processor = WVLPImageProcessor(size=getattr(self.config.vision_config, "image_size", 224))
            images = images if isinstance(images, (list, tuple)) else [images]
            pixel_values = image_processor(images, return_tensors="pt")["pixel_values"]
        device = next(self.parameters()).device
        language_model = language_model if language_model is not None else self.get_language_model()
        if tokenizer is None:
            tokenizer = getattr(self, "_lm_tokenizer", None) or load_lm_tokenizer(self.config.language_model_path)
            object.__setattr__(self, "_lm_tokenizer", tokenizer)
        was_training = self.training
        self.eval()
        try:
            prompts = self.get_image_prompts(pixel_values.to(device))
        finally:
            self.train(was_training)
        return generate_from_prompts(language_model, tokenizer, prompts, max_new_tokens, do_sample, **generate_kwargs)

    def itm_logits(
        self, image_tokens: torch.Tensor, fusion_input: torch.Tensor, attention_mask: torch.Tensor
    ) -> torch.Tensor:
        """Match/no-match logits (B, 2) of aligned (image, text) pairs from the fusion [CLS] token."""
        return self.itm_head(self.text_model.fuse(fusion_input, attention_mask, image_tokens)[:, 0])

    def itm_score(
        self,
        input_ids: torch.Tensor,
        attention_mask: torch.Tensor | None = None,
        pixel_values: torch.Tensor | None = None,
        image_tokens: torch.Tensor | None = None,
    ) -> torch.Tensor:
        """Probability that each aligned (image, text) pair matches; pass `image_tokens` to reuse computed ones."""
        if image_tokens is None:
            if pixel_values is None:
                raise ValueError("itm_score needs pixel_values or image_tokens")
            image_tokens = self.vision_model(pixel_values).last_hidden_state
        if attention_mask is None:
            attention_mask = torch.ones_like(input_ids)
        text = self.text_model.encode(input_ids, attention_mask, stop_at_fusion=True)
        return self.itm_logits(image_tokens, text.fusion_input, attention_mask).float().softmax(-1)[:, 1]

    def forward(
        self,
        input_ids: torch.Tensor | None = None,
        pixel_values: torch.Tensor | None = None,
        attention_mask: torch.Tensor | None = None,
        category_ids: torch.Tensor | None = None,
        return_loss: bool | None = None,
    ) -> WVLPOutput:
        """Dual-encoder pass; `return_loss` adds the in-batch ITC (category-aware when `category_ids` are given)."""
        if input_ids is None or pixel_values is None:
            raise ValueError("WVLPModel.forward needs both input_ids and pixel_values")
        vision = self.get_image_features(pixel_values)
        text = self.get_text_features(input_ids, attention_mask)
        image_embeds, text_embeds = vision.pooler_output, text.pooler_output
        temperature = self.temperature()
        logits_per_image = (image_embeds.float() @ text_embeds.float().t()) / temperature
        loss = None
        if return_loss:
            loss = clip_loss(image_embeds, text_embeds, temperature, category_ids)["itc_loss"]
        return WVLPOutput(
            loss=loss,
            logits_per_image=logits_per_image,
            logits_per_text=logits_per_image.t(),
            image_embeds=image_embeds,
            text_embeds=text_embeds,
            vision_model_output=vision,
            text_model_output=text,
        )


class WVLPForPreTraining(WVLPPreTrainedModel):
    """Training state: the student `WVLPModel`, its EMA teacher, feature queues and every pre-training loss.

    Publish the student with `save_published(folder)`; `save_pretrained` here writes the whole training state.
    """

    def __init__(self, config: WVLPConfig):
        super().__init__(config)
        self.wvlp = WVLPModel(config)
        self.teacher = WVLPModel(config)
        self.teacher.requires_grad_(False)
        embed_dim, size = config.embed_dim, config.queue_size
        self.register_buffer("image_queue", torch.zeros(size, embed_dim))
        self.register_buffer("text_queue", torch.zeros(size, embed_dim))
        self.register_buffer("category_queue", torch.full((size,), -1, dtype=torch.long))  # -1: slot not filled yet
        self.register_buffer("queue_ptr", torch.zeros((), dtype=torch.long))
        self.post_init()
        if self.temp_is_materialized():
            self.copy_student_to_teacher()

    def temp_is_materialized(self) -> bool:
        """False while from_pretrained builds the model on the meta device (the checkpoint then holds the teacher)."""
        return not self.wvlp.temp.value.is_meta

    def train(self, mode: bool = True) -> "WVLPForPreTraining":
        super().train(mode)
        self.teacher.eval()  # the teacher gives deterministic targets: no dropout, frozen BatchNorm statistics
        if getattr(self, "_pformer", None) is not None:
            self._pformer.eval()
        return self

    def attach_language_model(self, language_model: nn.Module, tokenizer=None) -> "WVLPForPreTraining":
        """The frozen LM of `generation_loss`, attached to the student by reference (not saved, not optimised)."""
        self.wvlp.attach_language_model(language_model, tokenizer)
        return self

    def attach_pformer(self, pformer: nn.Module) -> "WVLPForPreTraining":
        """The frozen text-only P-Former of `pformer_alignment_loss`; it must read the text tower's tokens."""
        if pformer.config.text_config.vocab_size != self.config.text_config.vocab_size:
            raise ValueError(
                f"pformer has a {pformer.config.text_config.vocab_size}-token vocabulary, the text tower "
                f"{self.config.text_config.vocab_size}: the P-Former must share the text tokenizer"
            )
        if pformer.config.num_prompts != self.config.bridge_num_prompts or (
            pformer.config.prompt_dim != self.config.bridge_prompt_dim
        ):
            raise ValueError(
                f"pformer prompts are {pformer.config.num_prompts} x {pformer.config.prompt_dim}, the bridge's "
                f"{self.config.bridge_num_prompts} x {self.config.bridge_prompt_dim}: they must match"
            )
        pformer.requires_grad_(False)
        object.__setattr__(self, "_pformer", pformer.eval())  # by reference: not a submodule, never saved
        return self

    @torch.no_grad()
    def copy_student_to_teacher(self) -> None:
        """Makes the teacher an exact copy of the student (start of training, or after loading only a student)."""
        self.teacher.load_state_dict(self.wvlp.state_dict())

    @torch.no_grad()
    def student_state(self) -> dict[str, torch.Tensor]:
        """The student's effective weights under plain `WVLPModel` names, also when PEFT adapters are injected.

        A LoRA layer contributes base weight + its active adapters' delta; a `modules_to_save` copy stands for its
        module. So the teacher and the published model follow what the student actually computes.
        """
        state = {}
        for name, module in self.wvlp.named_modules():
            if hasattr(module, "base_layer") and hasattr(module, "get_delta_weight"):
                delta = sum(module.get_delta_weight(a) for a in module.active_adapters if a in module.lora_A.keys())
                state[f"{name}.weight"] = module.base_layer.weight + delta
                if getattr(module.base_layer, "bias", None) is not None:
                    state[f"{name}.bias"] = module.base_layer.bias
        for name, tensor in self.wvlp.state_dict(keep_vars=True).items():
            if "lora_" in name or ".original_module." in name or ".base_layer." in name:
                continue
            state.setdefault(name.replace(".modules_to_save.default.", "."), tensor)
        return state

    @torch.no_grad()
    def momentum_update(self, momentum: float | None = None) -> None:
        """EMA step teacher <- m * teacher + (1 - m) * student; call once per optimiser step."""
        m = self.config.momentum if momentum is None else momentum
        student = self.student_state()
        for name, teacher in self.teacher.named_parameters():
            teacher.mul_(m).add_(student[name].detach(), alpha=1 - m)
        for name, teacher in self.teacher.named_buffers():  # BatchNorm statistics are copied
            teacher.copy_(student[name])

    def published_model(self) -> WVLPModel:
        """The student alone, as a standalone `WVLPModel` (no teacher, no queues, adapters merged)."""
        model = WVLPModel(copy.deepcopy(self.config))
        model.load_state_dict({k: v.detach() for k, v in self.student_state().items()})
        return model

    @classmethod
    def from_published(cls, model: WVLPModel) -> "WVLPForPreTraining":
        """Training state around a published `WVLPModel`: it becomes the student, and the teacher starts as its copy."""
        pretraining = cls(copy.deepcopy(model.config))
        pretraining.wvlp.load_state_dict(model.state_dict())
        pretraining.copy_student_to_teacher()
        return pretraining

    def save_published(self, save_directory: str, **kwargs) -> None:
        """Writes the publishable `WVLPModel` (the student) to `save_directory`."""
        self.published_model().save_pretrained(save_directory, **kwargs)

    @torch.no_grad()
    def _enqueue(self, image_features: torch.Tensor, text_features: torch.Tensor, category_ids: torch.Tensor) -> None:
        size = self.config.queue_size
        if size == 0:
            return
        n = min(image_features.shape[0], size)
        slots = (self.queue_ptr + torch.arange(n, device=self.queue_ptr.device)) % size
        self.image_queue[slots] = image_features[-n:].to(self.image_queue.dtype)
        self.text_queue[slots] = text_features[-n:].to(self.text_queue.dtype)
        self.category_queue[slots] = category_ids[-n:]
        self.queue_ptr.copy_((self.queue_ptr + n) % size)

    def _weight(self, term: str) -> float:
        return getattr(self.config, f"{term}_loss_weight")

    def forward(
        self,
        pixel_values: torch.Tensor,
        input_ids: torch.Tensor,
        attention_mask: torch.Tensor,
        category_ids: torch.Tensor,
        mlm_input_ids: torch.Tensor | None = None,
        mlm_labels: torch.Tensor | None = None,
        pixel_values_aug: torch.Tensor | None = None,
        knowledge_input_ids: torch.Tensor | None = None,
        knowledge_attention_mask: torch.Tensor | None = None,
        knowledge_valid: torch.Tensor | None = None,
        teacher_targets: torch.Tensor | None = None,
        alpha: float | None = None,
        lm_input_ids: torch.Tensor | None = None,
        lm_attention_mask: torch.Tensor | None = None,
    ) -> WVLPPreTrainingOutput:
        """All pre-training losses of one batch (see DESIGN "Pre-training objective"); terms with weight 0 are skipped.

        knowledge_*: (B, k, L) retrieved corpus sentences per description, `knowledge_valid` (B, k) marks real ones.
        teacher_targets: (B, B) frozen-teacher soft targets between this batch's descriptions (rows sum to 1).
        alpha: momentum-distillation weight for this step (the trainer warms it up); defaults to `config.alpha`.
        lm_input_ids / lm_attention_mask: the descriptions in the frozen LM's tokens (right-padded), for
        `generation_loss`; `pformer_alignment_loss` reads `input_ids` with the attached P-Former.
        """
        config = self.config
        alpha = config.alpha if alpha is None else alpha
        if not config.momentum_distillation:
            alpha = 0.0
        batch = pixel_values.shape[0]
        rank, _ = world_info()
        temperature = self.wvlp.temperature()
        weights = {term: self._weight(term) for term in LOSS_TERMS}
        if knowledge_input_ids is None:
            weights["knowledge"] = 0.0
        if pixel_values_aug is None:
            weights["imc"] = 0.0
        if mlm_input_ids is None:
            weights["mlm"] = 0.0
        if lm_input_ids is None and weights["generation"] > 0:
            raise ValueError(
                "generation_loss_weight > 0 needs lm_input_ids: the paired descriptions in the frozen "
                "LM's tokens (DistillationCollator(lm_tokenizer=...) adds them)"
            )

        vision = self.wvlp.get_image_features(pixel_values)
        text = self.wvlp.get_text_features(input_ids, attention_mask)
        image_feat, text_feat = vision.pooler_output, text.pooler_output

        with torch.no_grad():
            teacher_vision = self.teacher.get_image_features(pixel_values)
            image_feat_m = teacher_vision.pooler_output
            text_feat_m = self.teacher.get_text_features(input_ids, attention_mask).pooler_output
            image_feat_m_all = gather_features(image_feat_m)
            text_feat_m_all = gather_features(text_feat_m)
            categories_all = gather_features(category_ids)
            queue_valid = self.category_queue >= 0
            instance_all = torch.arange(categories_all.shape[0], device=category_ids.device)
            if config.category_aware_targets:
                row_keys, col_keys = category_ids, torch.cat([categories_all, self.category_queue])
            else:  # instance discrimination: only the paired item is a positive
                row_keys = instance_all[rank * batch : (rank + 1) * batch]
                col_keys = torch.cat([instance_all, torch.full_like(self.category_queue, -1)])
            column_valid = torch.cat([torch.ones_like(categories_all, dtype=torch.bool), queue_valid])
            hard_targets = positive_targets(row_keys, col_keys, column_valid)
            if teacher_targets is not None and config.frozen_teacher_weight > 0:
                frozen = torch.zeros_like(hard_targets)
                frozen[:, rank * batch : (rank + 1) * batch] = teacher_targets.to(frozen.dtype)
                beta = config.frozen_teacher_weight
                hard_targets = (1 - beta) * hard_targets + beta * frozen

        text_columns = torch.cat([text_feat_m_all, self.text_queue])
        image_columns = torch.cat([image_feat_m_all, self.image_queue])

        def both_directions(rows_a, columns_a, teacher_a, rows_b, columns_b, teacher_b) -> torch.Tensor:
            return (
                contrastive_loss(rows_a, columns_a, hard_targets, temperature, column_valid, teacher_a, alpha)
                + contrastive_loss(rows_b, columns_b, hard_targets, temperature, column_valid, teacher_b, alpha)
            ) / 2

        terms = {}
        if weights["itc"] > 0:
            terms["itc"] = both_directions(
                image_feat, text_columns, image_feat_m, text_feat, image_columns, text_feat_m
            )

        if weights["imc"] > 0:
            # Intra-modal: an image against the teacher's view of its augmented copy; a text against the teacher's text.
            with torch.no_grad():
                image_aug_m = self.teacher.get_image_features(pixel_values_aug).pooler_output
                image_aug_columns = torch.cat([gather_features(image_aug_m), self.image_queue])
            terms["imc"] = both_directions(
                image_feat, image_aug_columns, image_aug_m, text_feat, text_columns, text_feat_m
            )

        if weights["knowledge"] > 0:
            terms["knowledge"] = self._knowledge_loss(
                image_feat,
                image_feat_m,
                image_feat_m_all,
                category_ids,
                knowledge_input_ids,
                knowledge_attention_mask,
                knowledge_valid,
                temperature,
                alpha,
            )

        itm_logits = None
        if weights["itm"] > 0:
            terms["itm"], itm_logits = self._itm_loss(
                vision.last_hidden_state, text.fusion_input, attention_mask, image_feat, text_feat, category_ids
            )

        if weights["mlm"] > 0:
            terms["mlm"] = self._mlm_loss(
                mlm_input_ids, attention_mask, mlm_labels, vision.last_hidden_state, teacher_vision, alpha
            )

        if weights["generation"] > 0 or weights["pformer_alignment"] > 0:
            terms.update(
                self._prompt_losses(
                    vision.last_hidden_state, input_ids, attention_mask, lm_input_ids, lm_attention_mask, weights
                )
            )

        if weights["itc"] > 0 or weights["imc"] > 0:
            with torch.no_grad():
                self._enqueue(image_feat_m_all, text_feat_m_all, categories_all)

        total = sum(weights[name] * value for name, value in terms.items())
        return WVLPPreTrainingOutput(
            loss=total,
            logits_per_image=(image_feat.float() @ text_feat.float().t()) / temperature,
            itm_logits=itm_logits,
            **{f"{name}_loss": value for name, value in terms.items()},
        )

    def _prompt_losses(
        self,
        image_tokens: torch.Tensor,
        input_ids: torch.Tensor,
        attention_mask: torch.Tensor,
        lm_input_ids: torch.Tensor | None,
        lm_attention_mask: torch.Tensor | None,
        weights: dict[str, float],
    ) -> dict[str, torch.Tensor]:
        """Image-grounded generation of the paired description through the frozen LM, and the MSE of the image
        prompts to the frozen P-Former's prompts of that description (P-Former stage 2, `loss_align`)."""
        prompts = self.wvlp.get_image_prompts(image_tokens=image_tokens)
        terms = {}
        if weights["generation"] > 0:
            terms["generation"] = prompt_lm_loss(
                self.wvlp.get_language_model(), prompts, lm_input_ids, lm_attention_mask
            )
        if weights["pformer_alignment"] > 0:
            pformer = getattr(self, "_pformer", None)
            if pformer is None:
                raise ValueError("pformer_alignment_loss_weight > 0 needs a frozen P-Former: call attach_pformer(...)")
            with torch.no_grad():
                reference = pformer.get_prompts(input_ids, attention_mask)
            terms["pformer_alignment"] = F.mse_loss(prompts.float(), reference.float())
        return terms

    def _knowledge_loss(
        self,
        image_feat: torch.Tensor,
        image_feat_m: torch.Tensor,
        image_feat_m_all: torch.Tensor,
        category_ids: torch.Tensor,
        input_ids: torch.Tensor,
        attention_mask: torch.Tensor,
        valid: torch.Tensor | None,
        temperature: torch.Tensor,
        alpha: float,
    ) -> torch.Tensor:
        """Retrieved corpus sentences as extra positives of their description's image (and category), both directions."""
        batch, k, length = input_ids.shape
        valid = torch.ones(batch, k, dtype=torch.bool, device=input_ids.device) if valid is None else valid.bool()
        flat_ids, flat_mask, flat_valid = (
            input_ids.reshape(-1, length),
            attention_mask.reshape(-1, length),
            valid.reshape(-1),
        )
        knowledge_categories = category_ids.repeat_interleave(k)
        knowledge_feat = self.wvlp.get_text_features(flat_ids, flat_mask).pooler_output
        with torch.no_grad():
            knowledge_feat_m = self.teacher.get_text_features(flat_ids, flat_mask).pooler_output
            knowledge_m_all = gather_features(knowledge_feat_m)
            knowledge_valid_all = gather_features(flat_valid)
            knowledge_categories_all = gather_features(knowledge_categories)
            categories_all = gather_features(category_ids)
            queue_valid = self.category_queue >= 0
            image_columns = torch.cat([image_feat_m_all, self.image_queue])
            image_valid = torch.cat([torch.ones_like(categories_all, dtype=torch.bool), queue_valid])
            i2k_targets = positive_targets(category_ids, knowledge_categories_all, knowledge_valid_all)
            k2i_targets = positive_targets(
                knowledge_categories, torch.cat([categories_all, self.category_queue]), image_valid
            )
        image_to_knowledge = contrastive_loss(
            image_feat, knowledge_m_all, i2k_targets, temperature, knowledge_valid_all, image_feat_m, alpha
        )
        knowledge_to_image = contrastive_loss(
            knowledge_feat, image_columns, k2i_targets, temperature, image_valid, knowledge_feat_m, alpha, flat_valid
        )
        return (image_to_knowledge + knowledge_to_image) / 2

    def _itm_loss(
        self,
        image_tokens: torch.Tensor,
        fusion_input: torch.Tensor,
        attention_mask: torch.Tensor,
        image_feat: torch.Tensor,
        text_feat: torch.Tensor,
        category_ids: torch.Tensor,
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """ITM over positives and hard negatives drawn from the global batch, never from the same category."""
        rank, _ = world_info()
        batch = image_tokens.shape[0]
        local = slice(rank * batch, (rank + 1) * batch)
        image_tokens_all = gather_features(image_tokens, with_grad=True)
        fusion_input_all = gather_features(fusion_input, with_grad=True)
        attention_mask_all = gather_features(attention_mask)
        with torch.no_grad():
            image_feat_all = gather_features(image_feat.detach())
            text_feat_all = gather_features(text_feat.detach())
            categories_all = gather_features(category_ids)
            similarity = image_feat_all.float() @ text_feat_all.float().t()
            negative_text, text_valid = sample_hard_negatives(similarity, categories_all)
            negative_image, image_valid = sample_hard_negatives(similarity.t(), categories_all)
        negative_text, text_valid = negative_text[local], text_valid[local]
        negative_image, image_valid = negative_image[local], image_valid[local]

        pair_images = torch.cat([image_tokens, image_tokens_all[negative_image], image_tokens])
        pair_texts = torch.cat([fusion_input, fusion_input, fusion_input_all[negative_text]])
        pair_masks = torch.cat([attention_mask, attention_mask, attention_mask_all[negative_text]])
        logits = self.wvlp.itm_logits(pair_images, pair_texts, pair_masks)
        labels = torch.cat([torch.ones(batch), torch.zeros(2 * batch)]).long().to(logits.device)
        valid = torch.cat([torch.ones_like(image_valid), image_valid, text_valid]).float()
        return itm_loss(logits, labels, valid), logits

    def _mlm_loss(
        self,
        mlm_input_ids: torch.Tensor,
        attention_mask: torch.Tensor,
        mlm_labels: torch.Tensor,
        image_tokens: torch.Tensor,
        teacher_vision: BaseModelOutputWithPooling,
        alpha: float,
    ) -> torch.Tensor:
        """Image-conditioned masked LM; the head runs only at masked positions; soft targets from the teacher."""
        masked = mlm_labels != -100
        hidden = self.wvlp.text_model.fuse(
            self.wvlp.text_model.encode(mlm_input_ids, attention_mask, stop_at_fusion=True).fusion_input,
            attention_mask,
            image_tokens,
        )
        logits = self.wvlp.mlm_head(hidden[masked])
        teacher_logits = None
        if alpha > 0:
            with torch.no_grad():
                teacher_text = self.teacher.text_model
                teacher_hidden = teacher_text.fuse(
                    teacher_text.encode(mlm_input_ids, attention_mask, stop_at_fusion=True).fusion_input,
                    attention_mask,
                    teacher_vision.last_hidden_state,
                )
                teacher_logits = self.teacher.mlm_head(teacher_hidden[masked])
        return mlm_loss(logits, mlm_labels[masked], teacher_logits, alpha)


__all__ = ["WVLPForPreTraining", "WVLPModel", "WVLPPreTrainedModel", "WVLPOutput", "WVLPPreTrainingOutput"]
