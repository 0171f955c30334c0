"""`LocalTransformersBackend`: a causal LM run in-process with transformers, batched and seeded per request.

It decodes `batch_size` requests at a time with its own loop (left padding, a row leaves the batch at its end) and
picks each row's next token with `_RowSampler` (argmax, or a top-p draw from the request's own generator), so a
request's text never depends on which other requests share its batch.
"""

from __future__ import annotations

import logging
import os
import secrets
import time
from collections.abc import Callable, Sequence
from pathlib import Path

from wvlp.data.llm.base import GenerationRequest, GenerationResult, check_prompting
from wvlp.data.llm.gguf import (
    DEFAULT_LLM,
    PACKAGED_LLMS,
    _folder_fingerprint_files,
    _sha256_prefix,
    materialize_gguf,
    packaged_gguf_path,
    packaged_llm_folder,
)

logger = logging.getLogger(__name__)

_NUCLEUS_CANDIDATES = 256


def first_stop(text: str, stop: Sequence[str]) -> int | None:
    """Where the earliest of the `stop` strings begins in `text`, or None when none occurs."""
    found = [at for at in (text.find(s) for s in stop if s) if at >= 0]
    return min(found) if found else None


def _sample_sorted(probs, index, top_p, u):
    """Inverse-CDF draw from each row's nucleus; `probs` sorted descending, `index` their token ids."""
    import torch

    # Nucleus: drop a token once the mass *before* it reaches top_p, but always keep the top token (top_p=0).
    drop = (probs.cumsum(dim=-1) - probs) >= top_p[:, None]
    drop[:, 0] = False
    probs = probs.masked_fill(drop, 0.0)
    cdf = probs.cumsum(dim=-1)
    pos = torch.searchsorted(cdf, (u * cdf[:, -1]).unsqueeze(-1), right=True).clamp_(max=cdf.shape[-1] - 1)
    return index.gather(-1, pos).squeeze(-1)


class _RowSampler:
    """Picks the next token of each request from its own logits: argmax at temperature 0, else a top-p draw.

    Request i draws from its own `torch.Generator` (one uniform per step), so its tokens depend on its own seed and
    logits only, never on which other requests share the batch.
    """

    def __init__(self, requests: Sequence[GenerationRequest], seeds: Sequence[int]):
        import torch

        self.temperatures = torch.tensor([max(r.temperature, 0.0) for r in requests], dtype=torch.float32)
        self.top_ps = torch.tensor([min(max(r.top_p, 0.0), 1.0) for r in requests], dtype=torch.float32)
        self.generators = [
            None if r.temperature <= 0 else torch.Generator().manual_seed(seed) for r, seed in zip(requests, seeds)
        ]

    def __call__(self, scores, requests: Sequence[int]):
        """Next token ids (on CPU) for `scores` (one row per entry of `requests`, the requests' indices)."""
        import torch

        scores = scores.float()
        device = scores.device
        choice = scores.argmax(dim=-1)
        sampled = [j for j, i in enumerate(requests) if self.generators[i] is not None]
        if sampled:
            ids = [requests[j] for j in sampled]
            rows = torch.tensor(sampled, device=device)
            probs = (scores[rows] / self.temperatures[ids].to(device)[:, None]).softmax(dim=-1)
            top_p = self.top_ps[ids].to(device)
            # CPU generators on every device: the draws, hence the texts, do not depend on the hardware's RNG.
            u = torch.cat([torch.rand(1, generator=self.generators[i]) for i in ids]).to(device)
            # A full sort of the vocabulary costs ~10x a top-k; the nucleus almost always lies in the top k, and a
            # row whose top-k mass falls short is sorted in full (per row, so batch-mates never change its path).
            k = min(_NUCLEUS_CANDIDATES, probs.shape[-1])
            top_probs, top_idx = probs.topk(k, dim=-1)
            whole = top_p >= 1.0  # no nucleus: draw from the unsorted distribution
            short = (top_probs.sum(dim=-1) < top_p) & ~whole
            fits = ~short & ~whole
            choice[rows[fits]] = _sample_sorted(top_probs[fits], top_idx[fits], top_p[fits], u[fits])
            if short.any():
                full_probs, full_idx = probs[short].sort(dim=-1, descending=True)
                choice[rows[short]] = _sample_sorted(full_probs, full_idx, top_p[short], u[short])
            if whole.any():
                index = torch.arange(probs.shape[-1], device=device).expand(int(whole.sum()), -1)
                choice[rows[whole]] = _sample_sorted(probs[whole], index, top_p[whole], u[whole])
        return choice.cpu()


class LocalTransformersBackend:
    """A causal LM run in-process with transformers: the packaged SmolLM2-135M-Instruct GGUF by default.

    `model` is None (the packaged SmolLM2), the name of a packaged GGUF (`PACKAGED_LLMS`: "smollm2-135m",
    "gemma3-270m"), a `.gguf` file (dequantised once into the cache) or a local transformers folder. Requests are
    batched `batch_size` at a time (similar prompt lengths together, left padding); a row leaves the batch as soon
    as it ends (EOS, its `max_new_tokens` or one of its stop strings). A request's text depends only on its own
    prompt, parameters and seed: greedy output is the same batched or alone, and sampling draws from a generator
    seeded by the request's own seed (`seed=None` draws a fresh random seed). Decoding is temperature + top-p only:
    a request that sets top_k, min_p or a penalty to anything but its neutral value is refused with a ValueError
    before any generation. `prompting="chat"` needs a model with a chat template (checked here, before any
    request); "completion" sends plain text, with `few_shot` examples when the caller renders them.
    """

    def __init__(
        self,
        model: str | os.PathLike | None = None,
        *,
        batch_size: int = 8,
        cache_dir: str | os.PathLike | None = None,
        revision: str | None = None,
        device: str = "cpu",
        prompting: str = "chat",
        few_shot: bool = False,
    ):
        if batch_size < 1:
            raise ValueError(f"batch_size must be >= 1, got {batch_size}")
        check_prompting(prompting, few_shot)
        self.prompting, self.few_shot = prompting, bool(few_shot)
        packaged = PACKAGED_LLMS.get(DEFAULT_LLM if model is None else str(model))
        if packaged is not None and prompting == "chat" and not packaged.chat_template:
            # Known from the package: fail in a second, before joining and dequantising hundreds of MB.
            raise ValueError(_no_chat_template(f"{packaged.name!r} ({packaged.hub_id})"))
        import torch
        from transformers import AutoModelForCausalLM, AutoTokenizer

        if packaged is not None and packaged.chunked:
            self.name, self.model_id = packaged.file[: -len(".gguf")], packaged.hub_id
            self.revision = revision or packaged.sha256[:12]
            folder = packaged_llm_folder(Path(packaged.file), cache_dir, self.revision)
            if not folder.is_dir():  # the chunks are joined only to be dequantised
                folder = materialize_gguf(packaged_gguf_path(packaged.name, cache_dir), folder)
        else:
            path = packaged_gguf_path(packaged.name) if packaged is not None else Path(model).expanduser()
            if not path.exists():
                raise FileNotFoundError(f"LLM {path} does not exist (expected a .gguf file or a transformers folder)")
            if path.is_file() and path.suffix != ".gguf":
                raise ValueError(f"LLM file {path} is not a .gguf file")
            if path.is_dir() and not (path / "config.json").is_file():
                raise FileNotFoundError(f"{path} is not a transformers model folder (no config.json)")
            if path.is_file():
                self.name = path.name[: -len(".gguf")]
                self.revision = revision or _sha256_prefix([path])
                folder = materialize_gguf(path, packaged_llm_folder(path, cache_dir, self.revision))
            else:
                self.name = path.name
                self.revision = revision or _sha256_prefix(_folder_fingerprint_files(path))
                folder = path
            self.model_id = packaged.hub_id if packaged is not None else self.name
        self.batch_size = batch_size
        self.device = torch.device(device)
        self.tokenizer = AutoTokenizer.from_pretrained(folder)
        if prompting == "chat" and not getattr(self.tokenizer, "chat_template", None):
            raise ValueError(_no_chat_template(f"{self.model_id!r} ({folder})"))
        self.model = AutoModelForCausalLM.from_pretrained(folder, dtype=torch.float32).to(self.device).eval()
        if self.tokenizer.pad_token_id is None:
            self.tokenizer.pad_token = self.tokenizer.eos_token
        eos = self.model.generation_config.eos_token_id
        self.eos_token_ids = {eos} if isinstance(eos, int) else set(eos or [])
        if self.tokenizer.eos_token_id is not None:
            self.eos_token_ids.add(self.tokenizer.eos_token_id)
        self.max_length = getattr(self.model.config, "max_position_embeddings", None)

    def __repr__(self) -> str:
        return f"{type(self).__name__}(name={self.name!r}, revision={self.revision!r}, batch_size={self.batch_size})"

    def generate(self, requests: Sequence[GenerationRequest], on_result: Callable[[GenerationResult], None]) -> None:
        """Generate batch by batch (prompts of similar length together); `on_result` after each batch."""
        # Refused rather than ignored: every record would otherwise claim settings that were never applied.
        unsupported = next((r for r in requests if r.non_neutral_sampling()), None)
        if unsupported is not None:
            raise ValueError(
                f"{type(self).__name__} samples with temperature and top_p only, but decoding sets "
                f"{unsupported.non_neutral_sampling()}: leave these at their neutral values (top_k -1, min_p 0, "
                "repetition_penalty 1, frequency/presence_penalty 0) or use an LLM server (llm.type: server)"
            )
        prepared = []
        for request in requests:
            try:
                prepared.append((request, self._prompt_ids(request)))
            except Exception as err:  # a malformed request fails alone
                on_result(GenerationResult(request.key, None, error=f"{type(err).__name__}: {err}", attempts=1))
        prepared.sort(key=lambda item: len(item[1]))
        for start in range(0, len(prepared), self.batch_size):
            batch = prepared[start : start + self.batch_size]
            started = time.perf_counter()
            try:
                texts = self._generate_batch(batch)
                attempts = 1
            except Exception as err:
                # Outputs do not depend on batch composition, so retrying alone isolates the culprit at no cost.
                logger.warning("batch of %d failed (%s); retrying one request at a time", len(batch), err)
                texts, attempts = [], 2
                for item in batch:
                    try:
                        texts.append(self._generate_batch([item])[0])
                    except Exception as single_err:
                        texts.append(single_err)
            latency = time.perf_counter() - started
            for (request, _), text in zip(batch, texts):
                if isinstance(text, Exception):
                    error = f"{type(text).__name__}: {text}"
                    on_result(GenerationResult(request.key, None, error=error, attempts=attempts, latency_s=latency))
                else:
                    on_result(GenerationResult(request.key, text, attempts=attempts, latency_s=latency))

    def _prompt_ids(self, request: GenerationRequest) -> list[int]:
        """The prompt of one request (chat-templated, or plain text) as token ids, checked against the context."""
        if request.max_new_tokens < 1:
            raise ValueError(f"max_new_tokens must be >= 1, got {request.max_new_tokens}")
        if request.prompt is not None:
            # Plain text gets the tokenizer's own special tokens (Gemma's <bos>); a chat template writes its own.
            ids = self.tokenizer(request.prompt, add_special_tokens=True)["input_ids"]
        else:
            prompt = self.tokenizer.apply_chat_template(request.messages, tokenize=False, add_generation_prompt=True)
            ids = self.tokenizer(prompt, add_special_tokens=False)["input_ids"]
        if self.max_length is not None and len(ids) + request.max_new_tokens > self.max_length:
            raise ValueError(f"prompt of {len(ids)} tokens + {request.max_new_tokens} new exceeds {self.max_length}")
        return ids

    def _generate_batch(self, batch: Sequence[tuple[GenerationRequest, list[int]]]) -> list[str]:
        """Left-padded batched decoding; a row leaves the batch at its first EOS or stop string, or its own
        max_new_tokens."""
        import torch
        from transformers import DynamicCache

        requests = [request for request, _ in batch]
        width = max(len(ids) for _, ids in batch)
        pad = self.tokenizer.pad_token_id
        input_ids = torch.tensor([[pad] * (width - len(ids)) + ids for _, ids in batch], device=self.device)
        attention_mask = torch.tensor(
            [[0] * (width - len(ids)) + [1] * len(ids) for _, ids in batch], device=self.device
        )
        position_ids = (attention_mask.cumsum(dim=-1) - 1).clamp(min=0)
        sampler = _RowSampler(requests, [r.seed if r.seed is not None else secrets.randbits(63) for r in requests])
        generated: list[list[int]] = [[] for _ in requests]
        stopped: dict[int, str] = {}  # the text before the stop string of each row that met one
        active = list(range(len(requests)))  # the requests still decoding, in cache row order
        cache = DynamicCache(config=self.model.config)
        with torch.inference_mode():
            logits = self.model(
                input_ids=input_ids,
                attention_mask=attention_mask,
                position_ids=position_ids,
                past_key_values=cache,
                use_cache=True,
                logits_to_keep=1,
            ).logits[:, -1]
            position_ids = position_ids[:, -1:]
            while True:
                tokens = sampler(logits, active).tolist()
                keep = []
                for row, (i, token) in enumerate(zip(active, tokens)):
                    if token in self.eos_token_ids:
                        continue
                    generated[i].append(token)
                    if requests[i].stop:
                        # Decoded in full each step: a stop string may span tokens, or be part of one.
                        text = self.tokenizer.decode(generated[i], skip_special_tokens=True)
                        at = first_stop(text, requests[i].stop)
                        if at is not None:
                            stopped[i] = text[:at]
                            continue
                    if len(generated[i]) < requests[i].max_new_tokens:
                        keep.append(row)
                if not keep:
                    break
                if len(keep) < len(active):
                    # Finished rows leave the batch (HF generate keeps computing them until the longest ends).
                    rows = torch.tensor(keep, device=self.device)
                    cache.batch_select_indices(rows)
                    attention_mask, position_ids = attention_mask[rows], position_ids[rows]
                    active = [active[row] for row in keep]
                next_ids = torch.tensor([[generated[i][-1]] for i in active], device=self.device)
                attention_mask = torch.cat([attention_mask, attention_mask.new_ones(len(active), 1)], dim=-1)
                position_ids = position_ids + 1
                logits = self.model(
                    input_ids=next_ids,
                    attention_mask=attention_mask,
                    position_ids=position_ids,
                    past_key_values=cache,
                    use_cache=True,
                ).logits[:, -1]
        return [
            (stopped[i] if i in stopped else self.tokenizer.decode(ids, skip_special_tokens=True)).strip()
            for i, ids in enumerate(generated)
        ]


def _no_chat_template(model: str) -> str:
    """The start-up error for chat prompting of a model without a chat template."""
    return (
        f"LLM {model} has no chat template (a base model, not instruction-tuned), so it cannot be prompted with "
        "chat messages: set `prompting: completion` in the llm config (optionally with `few_shot: true`)"
    )


__all__ = ["LocalTransformersBackend", "first_stop"]
