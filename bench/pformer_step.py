"""P-Former training step and image-conditioned generation throughput on CPU, generation with vs without KV cache.

Default: MiniLM-L6-shaped P-Former (random weights: speed does not depend on values) + the packaged SmolLM2-135M
frozen LM (`--lm tiny` for a random 2-layer Llama), batch 8, 8 prompts, 24 LM tokens; the image side is a
WVLP model with the bridge (EfficientNet-Lite0 at 64 px). Median of `--steps` timed steps after 2 warm-up steps;
both generation arms (use_cache=True / False, greedy, forced to `--new-tokens` tokens) run in this one process.
Usage: python bench/pformer_step.py [--lm smollm2|tiny] [--batch-size 8] [--prompts 8] [--new-tokens 24] [--steps 5]
"""

import argparse
import json
import statistics
import time

import torch

from wvlp.modeling import PFormerConfig, PFormerModel, WVLPConfig, WVLPModel
from wvlp.modeling.configuration_wvlp import WVLPTextConfig


def time_calls(call, steps: int) -> float:
    """Median seconds of `steps` calls after two warm-up calls."""
    for _ in range(2):
        call()
    times = []
    for _ in range(steps):
        start = time.perf_counter()
        call()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def load_lm(kind: str):
    """The frozen LM under test: the packaged SmolLM2-135M-Instruct or a random tiny Llama."""
    if kind == "tiny":
        from wvlp.train.pformer_run import tiny_language_model

        return tiny_language_model(30522)
    from wvlp.modeling.modeling_bridge import load_language_model
    from wvlp.train.presets import smollm2_folder

    return load_language_model(str(smollm2_folder()))


def main(argv: list[str] | None = None) -> dict:
    """Runs the benchmark and prints one JSON object."""
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--lm", default="smollm2", choices=["smollm2", "tiny"])
    parser.add_argument("--batch-size", type=int, default=8)
    parser.add_argument("--prompts", type=int, default=8)
    parser.add_argument("--length", type=int, default=24, help="LM tokens per sentence in the training step")
    parser.add_argument("--new-tokens", type=int, default=24)
    parser.add_argument("--image-size", type=int, default=64)
    parser.add_argument("--steps", type=int, default=5)
    args = parser.parse_args(argv)
    torch.set_flush_denormal(True)
    torch.manual_seed(0)
    lm = load_lm(args.lm)
    width, vocab = lm.config.hidden_size, lm.config.vocab_size
    text = WVLPTextConfig(hidden_size=384, num_hidden_layers=6, num_attention_heads=12, intermediate_size=1536)
    pformer = PFormerModel(PFormerConfig(text_config=text, num_prompts=args.prompts, prompt_dim=width))
    pformer.attach_language_model(lm).train()
    g = torch.Generator().manual_seed(0)
    batch = dict(
        input_ids=torch.randint(1000, 30000, (args.batch_size, 32), generator=g),
        lm_input_ids=torch.randint(10, vocab, (args.batch_size, args.length), generator=g),
    )
    optimizer = torch.optim.AdamW(pformer.parameters(), lr=1e-5)

    def train_step() -> None:
        optimizer.zero_grad()
        pformer(**batch).loss.backward()
        optimizer.step()

    step_s = time_calls(train_step, args.steps)

    model = WVLPModel(
        WVLPConfig(
            vision_config=dict(variant="lite0", image_size=args.image_size),
            text_config=text,
            prompt_bridge=True,
            bridge_num_prompts=args.prompts,
            bridge_prompt_dim=width,
        )
    ).eval()
    pixel_values = torch.randn(args.batch_size, 3, args.image_size, args.image_size, generator=g)

    class Ids:  # decoding is not what is measured: return ids as text
        pad_token_id, eos_token_id = 0, None

        def batch_decode(self, rows, skip_special_tokens=True):
            return [" ".join(map(str, row.tolist())) for row in rows]

    generation = {}
    for use_cache in (True, False):

        def generate() -> None:
            # min_new_tokens forces every row to the full length, so both arms decode the same token count.
            model.generate_description(
                pixel_values,
                language_model=lm,
                tokenizer=Ids(),
                max_new_tokens=args.new_tokens,
                min_new_tokens=args.new_tokens,
                use_cache=use_cache,
            )

        seconds = time_calls(generate, max(1, args.steps // 2))
        generation["kv_cache" if use_cache else "no_kv_cache"] = {
            "seconds_per_batch": round(seconds, 3),
            "tokens_per_second": round(args.batch_size * args.new_tokens / seconds, 1),
        }
    result = {
        "lm": args.lm,
        "threads": torch.get_num_threads(),
        "batch_size": args.batch_size,
        "prompts": args.prompts,
        "pformer_train_step_s": round(step_s, 3),
        "pformer_sentences_per_s": round(args.batch_size / step_s, 2),
        "generation": generation,
        "kv_cache_speedup": round(
            generation["kv_cache"]["tokens_per_second"] / generation["no_kv_cache"]["tokens_per_second"], 2
        ),
    }
    print(json.dumps(result, indent=2))
    return result


if __name__ == "__main__":
    main()
