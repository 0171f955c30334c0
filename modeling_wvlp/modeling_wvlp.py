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

from .configuration_wvlp import (
    LOCKED_TEXT_TERMS,
    LOSS_TERMS,
    WVLPConfig,
    WVLPEfficientNetLiteConfig,
    WVLPPreTrainingConfig,
)
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
    TextAttentionMixin,
    WVLPMLMHead,
    WVLPTemperature,
    WVLPTextOutput,
    WVLPTextTower,
    init_text_weights,
)


@dataclass
class WVLPOutput(ModelOutput):
    r"""
    Output of `WVLPModel.forward`: similarity logits and the L2-normalised embeddings of both modalities.

    Args:
        loss (`torch.FloatTensor` of shape `()`, *optional*, returned when `return_loss` is `True`):
            In-batch image-text contrastive loss (category-aware when `category_ids` are given).
        logits_per_image (`torch.FloatTensor` of shape `(image_batch_size, text_batch_size)`):
            Cosine similarities of image and text embeddings divided by the temperature.
        logits_per_text (`torch.FloatTensor` of shape `(text_batch_size, image_batch_size)`):
            The transpose of `logits_per_image`.
        image_embeds (`torch.FloatTensor` of shape `(batch_size, embed_dim)`):
            L2-normalised projected image embeddings (`pooler_output` of `get_image_features`).
        text_embeds (`torch.FloatTensor` of shape `(batch_size, embed_dim)`):
            L2-normalised projected text embeddings (`pooler_output` of `get_text_features`).
        vision_model_output (`BaseModelOutputWithPooling`):
            The image tower's output: tokens `(batch_size, num_tokens, vision_hidden_size)` and `image_embeds`.
        text_model_output (`WVLPTextOutput`):
            The text tower's output in text mode: hidden states, the fusion input and `text_embeds`.
    """

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
    r"""
    Output of `WVLPForPreTraining.forward`: the weighted total and every loss term by name (one `<term>_loss` field per
    entry of `LOSS_TERMS`). A term is returned when its weight is > 0 and its inputs were given; each is a scalar.

    Args:
        loss (`torch.FloatTensor` of shape `()`):
            Sum of `<term>_loss_weight * <term>_loss` over the returned terms.
        itc_loss (`torch.FloatTensor` of shape `()`, *optional*, returned when `itc_loss_weight > 0`):
            Image-text contrastive loss against the teacher's gathered embeddings and the queue, both directions.
        itm_loss (`torch.FloatTensor` of shape `()`, *optional*, returned when `itm_loss_weight > 0`):
            Image-text matching over positives and hard negatives of another category.
        mlm_loss (`torch.FloatTensor` of shape `()`, *optional*, returned when `mlm_loss_weight > 0` and `mlm_input_ids` are given):
            Image-conditioned masked language modelling.
        imc_loss (`torch.FloatTensor` of shape `()`, *optional*, returned when `imc_loss_weight > 0` and `pixel_values_aug` is given):
            Intra-modal contrastive loss: an image against its augmented view, a text against the teacher's text.
        knowledge_loss (`torch.FloatTensor` of shape `()`, *optional*, returned when `knowledge_loss_weight > 0` and `knowledge_input_ids` are given):
            Contrastive loss between images and retrieved external-knowledge sentences, both directions.
        generation_loss (`torch.FloatTensor` of shape `()`, *optional*, returned when `generation_loss_weight > 0`):
            Causal-LM loss of the paired description after the bridge's image prompts, through the frozen LM.
        pformer_alignment_loss (`torch.FloatTensor` of shape `()`, *optional*, returned when `pformer_alignment_loss_weight > 0`):
            MSE between the bridge's image prompts and the frozen P-Former's prompts of the paired description.
        logits_per_image (`torch.FloatTensor` of shape `(batch_size, batch_size)`):
            The student's in-batch image-text similarities divided by the temperature.
        itm_logits (`torch.FloatTensor` of shape `(3 * batch_size, 2)`, *optional*, returned when `itm_loss` is):
            Match/no-match logits of the positive pairs, then the hard-negative images, then the hard-negative texts.
    """

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


@dataclass
class WVLPMomentumFeatures:
    """The momentum teacher's side of one batch, built once per step and shared by the ITC, IMC and knowledge terms.

    Columns are this batch's teacher embeddings gathered from every process (rank order), then the queue.
    """

    vision: BaseModelOutputWithPooling  # the teacher's image tower output (its tokens feed the MLM soft targets)
    image_embeds_teacher: torch.Tensor  # (B, D) the teacher's embeddings of the local images
    text_embeds_teacher: torch.Tensor  # (B, D)
    image_embeds_teacher_global: torch.Tensor  # (W * B, D) gathered from all W processes
    text_embeds_teacher_global: torch.Tensor  # (W * B, D)
    category_ids_global: torch.Tensor  # (W * B,)
    image_columns: torch.Tensor  # (W * B + Q, D) gathered embeddings, then the image queue
    text_columns: torch.Tensor  # (W * B + Q, D)
    column_categories: torch.Tensor  # (W * B + Q,) -1 in queue slots not filled yet
    column_valid: torch.Tensor  # (W * B + Q,) bool: False for queue slots not filled yet


class WVLPPreTrainedModel(TextAttentionMixin, PreTrainedModel):
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
        self.text_model = WVLPTextTower(config.text_config, config.fusion_layer, config.vision_hidden_size)
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
        r"""
        L2-normalised projected embedding of each image in `pooler_output` (unlike CLIP's, already normalised, so
        `image_embeds @ text_embeds.T` are cosine similarities); the image tokens in `last_hidden_state`.

        Args:
            pixel_values (`torch.FloatTensor` of shape `(batch_size, 3, image_size, image_size)`):
                Images as the processor prepares them.

        Returns:
            `BaseModelOutputWithPooling`: `last_hidden_state` of shape `(batch_size, num_tokens, vision_hidden_size)`
            (the grid or patch tokens the fusion layers attend to), `pooler_output` of shape `(batch_size, embed_dim)`.

        Examples:

        ```python
        >>> import torch
        >>> from PIL import Image
        >>> from transformers import AutoModel, AutoProcessor

        >>> model = AutoModel.from_pretrained("org/wvlp", trust_remote_code=True)
        >>> processor = AutoProcessor.from_pretrained("org/wvlp", trust_remote_code=True)
        >>> image = Image.new("RGB", (96, 96), "white")
        >>> inputs = processor(images=image, return_tensors="pt")
        >>> with torch.no_grad():
        ...     image_embeds = model.get_image_features(inputs["pixel_values"]).pooler_output
        >>> image_embeds.norm(dim=-1)  # unit length
        tensor([1.0000])
        ```
        """
        output = self.vision_model(pixel_values)
        output.pooler_output = F.normalize(self.vision_proj(output.pooler_output), dim=-1)
        return output

    def get_text_features(self, input_ids: torch.Tensor, attention_mask: torch.Tensor | None = None) -> WVLPTextOutput:
        r"""
        L2-normalised projected embedding of each text in `pooler_output`; the text-mode hidden states in
        `last_hidden_state` and the hidden states entering the fusion layers in `fusion_input`.

        Args:
            input_ids (`torch.LongTensor` of shape `(batch_size, sequence_length)`):
                Token ids from the processor's tokenizer.
            attention_mask (`torch.LongTensor` of shape `(batch_size, sequence_length)`, *optional*):
                1 for real tokens, 0 for padding; all ones when omitted.

        Returns:
            `WVLPTextOutput`: `last_hidden_state` and `fusion_input` of shape `(batch_size, sequence_length,
            hidden_size)`, `pooler_output` of shape `(batch_size, embed_dim)`.

        Examples:

        ```python
        >>> import torch
        >>> from transformers import AutoModel, AutoProcessor

        >>> model = AutoModel.from_pretrained("org/wvlp", trust_remote_code=True)
        >>> processor = AutoProcessor.from_pretrained("org/wvlp", trust_remote_code=True)
        >>> inputs = processor(text=["a photo of a sneaker.", "a photo of a bag."], return_tensors="pt")
        >>> with torch.no_grad():
        ...     text_embeds = model.get_text_features(inputs["input_ids"], inputs["attention_mask"]).pooler_output
        >>> text_embeds.shape
        torch.Size([2, 256])
        ```
        """
        output = self.text_model.encode(input_ids, attention_mask)
        output.pooler_output = _project(self, output.pooler_output)
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
        """The attached frozen LM, loaded by `config.language_model_id` on first use when none is attached."""
        if self._language_model is None:
            self.attach_language_model(load_language_model(self.config.language_model_id))
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
        are loaded by `config.language_model_id` (the LM is not part of the saved WVLP weights).
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
            tokenizer = getattr(self, "_lm_tokenizer", None) or load_lm_tokenizer(self.config.language_model_id)
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
        r"""
        Probability that each aligned (image, text) pair matches, from the fusion encoder's ITM head: row i scores
        image i against text i. Use it to re-rank the top ITC candidates.

        Args:
            input_ids (`torch.LongTensor` of shape `(batch_size, sequence_length)`):
                Token ids of the texts.
            attention_mask (`torch.LongTensor` of shape `(batch_size, sequence_length)`, *optional*):
                1 for real tokens, 0 for padding; all ones when omitted.
            pixel_values (`torch.FloatTensor` of shape `(batch_size, 3, image_size, image_size)`, *optional*):
                The images; give these or `image_tokens`.
            image_tokens (`torch.FloatTensor` of shape `(batch_size, num_tokens, vision_hidden_size)`, *optional*):
                Image tokens computed before (`get_image_features(...).last_hidden_state`), to reuse them.

        Returns:
            `torch.FloatTensor` of shape `(batch_size,)`: match probabilities in [0, 1].

        Examples:

        ```python
        >>> import torch
        >>> from PIL import Image
        >>> from transformers import AutoModel, AutoProcessor

        >>> model = AutoModel.from_pretrained("org/wvlp", trust_remote_code=True)
        >>> processor = AutoProcessor.from_pretrained("org/wvlp", trust_remote_code=True)
        >>> images = [Image.new("RGB", (96, 96), "white")] * 2
        >>> inputs = processor(images=images, text=["a photo of a sneaker.", "a photo of a bag."], return_tensors="pt")
        >>> with torch.no_grad():
        ...     scores = model.itm_score(inputs["input_ids"], inputs["attention_mask"], pixel_values=inputs["pixel_values"])
        >>> scores.shape
        torch.Size([2])
        ```
        """
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
        r"""
        Dual-encoder pass: the embeddings of both modalities and their similarity logits; `return_loss` adds the
        in-batch ITC.

        Args:
            input_ids (`torch.LongTensor` of shape `(text_batch_size, sequence_length)`):
                Token ids of the texts.
            pixel_values (`torch.FloatTensor` of shape `(image_batch_size, 3, image_size, image_size)`):
                The images.
            attention_mask (`torch.LongTensor` of shape `(text_batch_size, sequence_length)`, *optional*):
                1 for real tokens, 0 for padding.
            category_ids (`torch.LongTensor` of shape `(batch_size,)`, *optional*):
                Category of each (aligned) pair: same-category pairs count as positives of the loss.
            return_loss (`bool`, *optional*):
                Whether to return the contrastive loss (images and texts must then be aligned pairs).

        Examples:

        ```python
        >>> import torch
        >>> from PIL import Image
        >>> from transformers import AutoModel, AutoProcessor

        >>> model = AutoModel.from_pretrained("org/wvlp", trust_remote_code=True)
        >>> processor = AutoProcessor.from_pretrained("org/wvlp", trust_remote_code=True)
        >>> image = Image.new("RGB", (96, 96), "white")
        >>> inputs = processor(images=image, text=["a photo of a sneaker.", "a photo of a bag."], return_tensors="pt")
        >>> with torch.no_grad():
        ...     outputs = model(**inputs)
        >>> probs = outputs.logits_per_image.softmax(dim=1)  # zero-shot label probabilities of the image
        ```
        """
        if input_ids is None or pixel_values is None:
            raise ValueError("WVLPModel.forward needs both input_ids and pixel_values")
        vision = self.get_image_features(pixel_values)
        text = self.get_text_features(input_ids, attention_mask)
        image_embeds, text_embeds = vision.pooler_output, text.pooler_output
        temperature = self.temperature()
        logits_per_image = (image_embeds.float() @ text_embeds.float().t()) / temperature
        loss = None
        if return_loss:
            loss = clip_loss(image_embeds, text_embeds, temperature, category_ids=category_ids)
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

    Publish the student with `save_published(folder)`; `save_pretrained` here writes the whole training state. The
    pre-training settings are `config.pretraining_config` (a default `WVLPPreTrainingConfig` when the config has none).
    """

    def __init__(self, config: WVLPConfig):
        if config.pretraining_config is None:
            config.pretraining_config = WVLPPreTrainingConfig()
        super().__init__(config)
        self.wvlp = WVLPModel(config)
        self.teacher = WVLPModel(config)
        self.teacher.requires_grad_(False)
        embed_dim, size = config.embed_dim, config.pretraining_config.queue_size
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
    def momentum_update(
        self,
        student_state: dict[str, torch.Tensor] | None = None,
        *,
        momentum: float | None = None,
        skip: tuple[str, ...] = (),
    ) -> None:
        """EMA step teacher <- m * teacher + (1 - m) * student; call once per optimiser step.

        `student_state` holds the student's effective weights under plain `WVLPModel` names (by default its
        `state_dict()`); with adapters injected, pass the merged ones (`wvlp.train.lora.merged_state_dict`), so the
        teacher follows what the student actually computes. `momentum` defaults to `pretraining_config.momentum`.
        Parameters whose names start with a prefix in `skip` are left as they are: after a locked-text step
        (`skip=("text_model.",)`) the teacher's text tower stays bit-identical to the frozen student's, which is
        what lets the cached pooled text stand for both.
        """
        m = self.config.pretraining_config.momentum if momentum is None else momentum
        student = self.wvlp.state_dict() if student_state is None else student_state
        missing = [name for name in self.teacher.state_dict() if name not in student]
        if missing:
            raise KeyError(
                f"student_state lacks {missing[:3]} (of {len(missing)}): it must hold plain WVLPModel names; with "
                "PEFT adapters injected pass wvlp.train.lora.merged_state_dict(model)"
            )
        for name, teacher in self.teacher.named_parameters():
            if not name.startswith(skip):
                teacher.mul_(m).add_(student[name].detach(), alpha=1 - m)
        for name, teacher in self.teacher.named_buffers():  # BatchNorm statistics are copied
            teacher.copy_(student[name])

    def published_model(self, student_state: dict[str, torch.Tensor] | None = None) -> WVLPModel:
        """The student alone, as a standalone `WVLPModel`: no teacher, no queues, no pre-training settings.

        `student_state` as in `momentum_update`: the merged weights when adapters are injected.
        """
        config = copy.deepcopy(self.config)
        config.pretraining_config = None  # training state: a published config.json is architecture only
        model = WVLPModel(config)
        state = self.wvlp.state_dict() if student_state is None else student_state
        model.load_state_dict({k: v.detach() for k, v in state.items()})
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
    def _enqueue(self, teacher: WVLPMomentumFeatures) -> None:
        """Writes this step's gathered teacher embeddings and categories into the ring-buffer queues."""
        size = self.config.pretraining_config.queue_size
        if size == 0:
            return
        image_embeds, text_embeds = teacher.image_embeds_teacher_global, teacher.text_embeds_teacher_global
        n = min(image_embeds.shape[0], size)
        slots = (self.queue_ptr + torch.arange(n, device=self.queue_ptr.device)) % size
        self.image_queue[slots] = image_embeds[-n:].to(self.image_queue.dtype)
        self.text_queue[slots] = text_embeds[-n:].to(self.text_queue.dtype)
        self.category_queue[slots] = teacher.category_ids_global[-n:]
        self.queue_ptr.copy_((self.queue_ptr + n) % size)

    def _active_weights(
        self,
        mlm_input_ids: torch.Tensor | None,
        pixel_values_aug: torch.Tensor | None,
        knowledge: torch.Tensor | None,
        lm_input_ids: torch.Tensor | None,
        locked_text: bool,
    ) -> dict[str, float]:
        """Each term's weight, 0 for the terms whose inputs this batch lacks (and, locked text, that read text tokens)."""
        weights = {term: self.config.pretraining_config.loss_weight(term) for term in LOSS_TERMS}
        if knowledge is None:
            weights["knowledge"] = 0.0
        if pixel_values_aug is None:
            weights["imc"] = 0.0
        if locked_text:
            return {term: weight if term in LOCKED_TEXT_TERMS else 0.0 for term, weight in weights.items()}
        if mlm_input_ids is None:
            weights["mlm"] = 0.0
        if lm_input_ids is None and weights["generation"] > 0:
            raise ValueError(
                "generation_loss_weight > 0 needs lm_input_ids: the paired descriptions in the frozen "
                "LM's tokens (DistillationCollator(lm_tokenizer=...) adds them)"
            )
        return weights

    def _alpha(self, alpha: float | None) -> float:
        """This step's momentum-distillation weight: the trainer's (warmed-up) value, else the config's."""
        pretraining = self.config.pretraining_config
        if not pretraining.momentum_distillation:
            return 0.0
        return pretraining.alpha if alpha is None else alpha

    def forward(
        self,
        pixel_values: torch.Tensor,
        input_ids: torch.Tensor | None = None,
        attention_mask: torch.Tensor | None = None,
        category_ids: torch.Tensor | None = None,
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
        text_pooler_output: torch.Tensor | None = None,
        knowledge_pooler_output: torch.Tensor | None = None,
    ) -> WVLPPreTrainingOutput:
        r"""
        All pre-training losses of one batch (README.md, "Pre-training objective"); terms with weight 0 are skipped.

        Args:
            pixel_values (`torch.FloatTensor` of shape `(batch_size, 3, image_size, image_size)`): the images.
            input_ids, attention_mask (`torch.LongTensor` of shape `(batch_size, sequence_length)`): each image's
                paired description.
            category_ids (`torch.LongTensor` of shape `(batch_size,)`): each pair's category (same-category pairs
                are positives).
            mlm_input_ids, mlm_labels (`torch.LongTensor` of shape `(batch_size, sequence_length)`, *optional*): the
                masked descriptions and their labels (-100 where not masked), for `mlm_loss`.
            pixel_values_aug (`torch.FloatTensor`, *optional*): an augmented view of each image, for `imc_loss`.
            knowledge_input_ids, knowledge_attention_mask (`torch.LongTensor` of shape `(batch_size, k, length)`,
                *optional*): retrieved corpus sentences per description; `knowledge_valid` `(batch_size, k)` marks the
                real ones.
            teacher_targets (`torch.FloatTensor` of shape `(batch_size, batch_size)`, *optional*): frozen-teacher soft
                targets between this batch's descriptions (rows sum to 1).
            alpha (`float`, *optional*): momentum-distillation weight for this step (the trainer warms it up);
                defaults to `pretraining_config.alpha`.
            lm_input_ids, lm_attention_mask (`torch.LongTensor`, *optional*): the descriptions in the frozen LM's
                tokens (right-padded), for `generation_loss`; `pformer_alignment_loss` reads `input_ids` with the
                attached P-Former.
            text_pooler_output (`torch.FloatTensor` of shape `(batch_size, text_hidden_size)`, *optional*): the
                locked-text step: the frozen text tower's pooled output of each description (cached once by
                `wvlp.train.text_cache`) instead of `input_ids`. The text tower does not run; the projections, the
                temperature and the image tower train, and only the terms that need no text tokens are computed
                (ITC, IMC, knowledge), with the same teacher, queue and targets.
            knowledge_pooler_output (`torch.FloatTensor` of shape `(batch_size, k, text_hidden_size)`, *optional*):
                the same for the retrieved knowledge sentences, instead of `knowledge_input_ids`.
        """
        locked = text_pooler_output is not None
        if category_ids is None or (input_ids is None) != locked:
            raise ValueError(
                "WVLPForPreTraining needs category_ids and exactly one of input_ids (the full step) or "
                "text_pooler_output (the locked-text step)"
            )
        knowledge = knowledge_pooler_output if locked else knowledge_input_ids
        weights = self._active_weights(mlm_input_ids, pixel_values_aug, knowledge, lm_input_ids, locked)
        alpha, temperature = self._alpha(alpha), self.wvlp.temperature()
        vision = self.wvlp.get_image_features(pixel_values)
        if locked:
            text, text_embeds = None, _project(self.wvlp, text_pooler_output)
        else:
            text = self.wvlp.get_text_features(input_ids, attention_mask)
            text_embeds = text.pooler_output
        image_embeds = vision.pooler_output
        teacher = self._momentum_features(  # gathered + queue
            pixel_values, input_ids, attention_mask, category_ids, text_pooler_output=text_pooler_output
        )
        targets = self._contrastive_targets(teacher, category_ids, teacher_targets)
        contrast = dict(targets=targets, temperature=temperature, alpha=alpha)

        terms, itm_logits = {}, None
        if weights["itc"] > 0:
            terms["itc"] = self._itc_loss(image_embeds, text_embeds, teacher, **contrast)
        if weights["imc"] > 0:
            terms["imc"] = self._imc_loss(image_embeds, text_embeds, pixel_values_aug, teacher, **contrast)
        if weights["knowledge"] > 0:
            knowledge_embeds, knowledge_embeds_teacher = self._knowledge_embeddings(
                knowledge_input_ids, knowledge_attention_mask, knowledge_pooler_output
            )
            terms["knowledge"] = self._knowledge_loss(
                image_embeds,
                teacher,
                category_ids,
                knowledge_embeds,
                knowledge_embeds_teacher,
                knowledge_valid,
                temperature,
                alpha,
            )
        n = self.config.pretraining_config.fusion_batch_size or None  # the sub-batch the fusion layers read
        if weights["itm"] > 0:
            terms["itm"], itm_logits = self._itm_loss(
                _rows(vision, n), _rows(text, n), attention_mask[:n], category_ids[:n]
            )
        if weights["mlm"] > 0:
            terms["mlm"] = self._mlm_loss(
                mlm_input_ids[:n],
                attention_mask[:n],
                mlm_labels[:n],
                _rows(vision, n),
                _rows(teacher.vision, n),
                alpha,
            )
        if weights["generation"] > 0 or weights["pformer_alignment"] > 0:
            prompt_inputs = (input_ids, attention_mask, lm_input_ids, lm_attention_mask)
            terms.update(self._prompt_losses(vision.last_hidden_state, *prompt_inputs, weights))
        if weights["itc"] > 0 or weights["imc"] > 0:
            self._enqueue(teacher)

        return WVLPPreTrainingOutput(
            loss=sum(weights[name] * value for name, value in terms.items()),
            logits_per_image=(image_embeds.float() @ text_embeds.float().t()) / temperature,
            itm_logits=itm_logits,
            **{f"{name}_loss": value for name, value in terms.items()},
        )

    @torch.no_grad()
    def _momentum_features(
        self,
        pixel_values: torch.Tensor,
        input_ids: torch.Tensor | None,
        attention_mask: torch.Tensor | None,
        category_ids: torch.Tensor,
        *,
        text_pooler_output: torch.Tensor | None = None,
    ) -> WVLPMomentumFeatures:
        """The teacher's embeddings of the batch, gathered from every process, then the queue: the contrastive columns.

        In the locked-text step the teacher's text tower equals the frozen student's (the EMA skips it), so the
        cached pooled output goes through the teacher's own projection.
        """
        vision = self.teacher.get_image_features(pixel_values)
        image_embeds_teacher = vision.pooler_output
        if text_pooler_output is not None:
            text_embeds_teacher = _project(self.teacher, text_pooler_output)
        else:
            text_embeds_teacher = self.teacher.get_text_features(input_ids, attention_mask).pooler_output
        image_embeds_teacher_global = gather_features(image_embeds_teacher)
        text_embeds_teacher_global = gather_features(text_embeds_teacher)
        category_ids_global = gather_features(category_ids)
        queue_valid = self.category_queue >= 0
        return WVLPMomentumFeatures(
            vision=vision,
            image_embeds_teacher=image_embeds_teacher,
            text_embeds_teacher=text_embeds_teacher,
            image_embeds_teacher_global=image_embeds_teacher_global,
            text_embeds_teacher_global=text_embeds_teacher_global,
            category_ids_global=category_ids_global,
            image_columns=torch.cat([image_embeds_teacher_global, self.image_queue]),
            text_columns=torch.cat([text_embeds_teacher_global, self.text_queue]),
            column_categories=torch.cat([category_ids_global, self.category_queue]),
            column_valid=torch.cat([torch.ones_like(category_ids_global, dtype=torch.bool), queue_valid]),
        )

    @torch.no_grad()
    def _contrastive_targets(
        self, teacher: WVLPMomentumFeatures, category_ids: torch.Tensor, teacher_targets: torch.Tensor | None
    ) -> torch.Tensor:
        """(B, W * B + Q) hard targets of the local rows over the columns: same-category columns are positives (the
        paired column only, without `category_aware_targets`), mixed with the frozen teacher's soft targets."""
        pretraining = self.config.pretraining_config
        rank, _ = world_info()
        batch = category_ids.shape[0]
        local = slice(rank * batch, (rank + 1) * batch)
        if pretraining.category_aware_targets:
            row_keys, col_keys = category_ids, teacher.column_categories
        else:  # instance discrimination: only the paired item is a positive
            instance_all = torch.arange(teacher.category_ids_global.shape[0], device=category_ids.device)
            row_keys = instance_all[local]
            col_keys = torch.cat([instance_all, torch.full_like(self.category_queue, -1)])
        hard_targets = positive_targets(row_keys, col_keys, teacher.column_valid)
        if teacher_targets is not None and pretraining.frozen_teacher_weight > 0:
            frozen = torch.zeros_like(hard_targets)
            frozen[:, local] = teacher_targets.to(frozen.dtype)
            beta = pretraining.frozen_teacher_weight
            hard_targets = (1 - beta) * hard_targets + beta * frozen
        return hard_targets

    @staticmethod
    def _both_directions(
        rows_a: torch.Tensor,
        columns_a: torch.Tensor,
        teacher_a: torch.Tensor,
        rows_b: torch.Tensor,
        columns_b: torch.Tensor,
        teacher_b: torch.Tensor,
        *,
        targets: torch.Tensor,
        column_valid: torch.Tensor,
        temperature: torch.Tensor,
        alpha: float,
    ) -> torch.Tensor:
        """Mean of two momentum-distilled contrastive directions (a -> b's columns, b -> a's) on the same targets."""
        common = dict(column_valid=column_valid, alpha=alpha)
        return (
            contrastive_loss(rows_a, columns_a, targets, temperature, teacher_rows=teacher_a, **common)
            + contrastive_loss(rows_b, columns_b, targets, temperature, teacher_rows=teacher_b, **common)
        ) / 2

    def _itc_loss(
        self,
        image_embeds: torch.Tensor,
        text_embeds: torch.Tensor,
        teacher: WVLPMomentumFeatures,
        *,
        targets: torch.Tensor,
        temperature: torch.Tensor,
        alpha: float,
    ) -> torch.Tensor:
        """Image-to-text and text-to-image contrastive loss against the teacher's columns."""
        return self._both_directions(
            image_embeds,
            teacher.text_columns,
            teacher.image_embeds_teacher,
            text_embeds,
            teacher.image_columns,
            teacher.text_embeds_teacher,
            targets=targets,
            column_valid=teacher.column_valid,
            temperature=temperature,
            alpha=alpha,
        )

    def _imc_loss(
        self,
        image_embeds: torch.Tensor,
        text_embeds: torch.Tensor,
        pixel_values_aug: torch.Tensor,
        teacher: WVLPMomentumFeatures,
        *,
        targets: torch.Tensor,
        temperature: torch.Tensor,
        alpha: float,
    ) -> torch.Tensor:
        """Intra-modal contrastive loss."""
        # Intra-modal: an image against the teacher's view of its augmented copy; a text against the teacher's text.
        with torch.no_grad():
            image_aug_teacher = self.teacher.get_image_features(pixel_values_aug).pooler_output
            image_aug_columns = torch.cat([gather_features(image_aug_teacher), self.image_queue])
        return self._both_directions(
            image_embeds,
            image_aug_columns,
            image_aug_teacher,
            text_embeds,
            teacher.text_columns,
            teacher.text_embeds_teacher,
            targets=targets,
            column_valid=teacher.column_valid,
            temperature=temperature,
            alpha=alpha,
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

    def _knowledge_embeddings(
        self,
        input_ids: torch.Tensor | None,
        attention_mask: torch.Tensor | None,
        pooler_output: torch.Tensor | None,
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """(B * k, D) student and teacher embeddings of the knowledge sentences: from their tokens, or (locked text)
        from the frozen tower's cached pooled output."""
        if pooler_output is not None:
            flat = pooler_output.reshape(-1, pooler_output.shape[-1])
            with torch.no_grad():
                teacher = _project(self.teacher, flat)
            return _project(self.wvlp, flat), teacher
        flat_ids, flat_mask = (
            input_ids.reshape(-1, input_ids.shape[-1]),
            attention_mask.reshape(-1, input_ids.shape[-1]),
        )
        with torch.no_grad():
            teacher = self.teacher.get_text_features(flat_ids, flat_mask).pooler_output
        return self.wvlp.get_text_features(flat_ids, flat_mask).pooler_output, teacher

    def _knowledge_loss(
        self,
        image_embeds: torch.Tensor,
        teacher: WVLPMomentumFeatures,
        category_ids: torch.Tensor,
        knowledge_embeds: torch.Tensor,
        knowledge_embeds_teacher: torch.Tensor,
        valid: torch.Tensor | None,
        temperature: torch.Tensor,
        alpha: float,
    ) -> torch.Tensor:
        """Retrieved corpus sentences as extra positives of their description's image (and category), both directions.

        `knowledge_embeds` (B * k, D) are the student's embeddings of each image's k sentences (row-major), the
        teacher's likewise. The knowledge-to-image direction reuses ITC's teacher image columns (gathered embeddings +
        queue) and mask.
        """
        batch = category_ids.shape[0]
        k = knowledge_embeds.shape[0] // batch
        valid = torch.ones(batch, k, dtype=torch.bool, device=category_ids.device) if valid is None else valid.bool()
        flat_valid = valid.reshape(-1)
        knowledge_categories = category_ids.repeat_interleave(k)
        with torch.no_grad():
            knowledge_embeds_teacher_global = gather_features(knowledge_embeds_teacher)
            knowledge_valid_global = gather_features(flat_valid)
            knowledge_categories_global = gather_features(knowledge_categories)
            i2k_targets = positive_targets(category_ids, knowledge_categories_global, knowledge_valid_global)
            k2i_targets = positive_targets(knowledge_categories, teacher.column_categories, teacher.column_valid)
        image_to_knowledge = contrastive_loss(
            image_embeds,
            knowledge_embeds_teacher_global,
            i2k_targets,
            temperature,
            column_valid=knowledge_valid_global,
            teacher_rows=teacher.image_embeds_teacher,
            alpha=alpha,
        )
        knowledge_to_image = contrastive_loss(
            knowledge_embeds,
            teacher.image_columns,
            k2i_targets,
            temperature,
            column_valid=teacher.column_valid,
            teacher_rows=knowledge_embeds_teacher,
            alpha=alpha,
            row_valid=flat_valid,
        )
        return (image_to_knowledge + knowledge_to_image) / 2

    def _itm_loss(
        self,
        vision: BaseModelOutputWithPooling,
        text: WVLPTextOutput,
        attention_mask: torch.Tensor,
        category_ids: torch.Tensor,
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """ITM over positives and hard negatives drawn from the global batch, never from the same category."""
        image_tokens, fusion_input = vision.last_hidden_state, text.fusion_input
        rank, _ = world_info()
        batch = image_tokens.shape[0]
        local = slice(rank * batch, (rank + 1) * batch)
        image_tokens_global = gather_features(image_tokens, with_grad=True)
        fusion_input_global = gather_features(fusion_input, with_grad=True)
        attention_mask_global = gather_features(attention_mask)
        with torch.no_grad():
            image_embeds_global = gather_features(vision.pooler_output.detach())
            text_embeds_global = gather_features(text.pooler_output.detach())
            category_ids_global = gather_features(category_ids)
            similarity = image_embeds_global.float() @ text_embeds_global.float().t()
            negative_text, text_valid = sample_hard_negatives(similarity, category_ids_global)
            negative_image, image_valid = sample_hard_negatives(similarity.t(), category_ids_global)
        negative_text, text_valid = negative_text[local], text_valid[local]
        negative_image, image_valid = negative_image[local], image_valid[local]

        pair_images = torch.cat([image_tokens, image_tokens_global[negative_image], image_tokens])
        pair_texts = torch.cat([fusion_input, fusion_input, fusion_input_global[negative_text]])
        pair_masks = torch.cat([attention_mask, attention_mask, attention_mask_global[negative_text]])
        logits = self.wvlp.itm_logits(pair_images, pair_texts, pair_masks)
        labels = torch.cat([torch.ones(batch), torch.zeros(2 * batch)]).long().to(logits.device)
        valid = torch.cat([torch.ones_like(image_valid), image_valid, text_valid]).float()
        return itm_loss(logits, labels, valid=valid), logits

    def _mlm_loss(
        self,
        mlm_input_ids: torch.Tensor,
        attention_mask: torch.Tensor,
        mlm_labels: torch.Tensor,
        vision: BaseModelOutputWithPooling,
        teacher_vision: BaseModelOutputWithPooling,
        alpha: float,
    ) -> torch.Tensor:
        """Image-conditioned masked LM; the head runs only at masked positions; soft targets from the teacher."""
        masked = mlm_labels != -100
        hidden = self.wvlp.text_model.fuse(
            self.wvlp.text_model.encode(mlm_input_ids, attention_mask, stop_at_fusion=True).fusion_input,
            attention_mask,
            vision.last_hidden_state,
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
        return mlm_loss(logits, mlm_labels[masked], teacher_logits=teacher_logits, alpha=alpha)


def _rows(output: ModelOutput, n: int | None) -> ModelOutput:
    """The same tower output restricted to its first `n` rows (all when None)."""
    return output if n is None else type(output)(**{k: v[:n] for k, v in output.items()})


def _project(model: WVLPModel, text_pooler_output: torch.Tensor) -> torch.Tensor:
    """The L2-normalised embedding `get_text_features` makes of a text tower's pooled output."""
    return F.normalize(model.text_proj(text_pooler_output), dim=-1)


__all__ = [
    "WVLPForPreTraining",
    "WVLPModel",
    "WVLPMomentumFeatures",
    "WVLPOutput",
    "WVLPPreTrainedModel",
    "WVLPPreTrainingOutput",
]
