"""Each describer's decoding settings, chosen by description quality on a small grid.

    python -m studies.decoding --output out/decoding            # every describer, every grid point
    python -m studies.decoding --describers smollm2 --samples 1

For each describer (its LLM and prompting from its describe config, `DESCRIBERS`) and each grid point
(temperature, top_p, max_new_tokens), one sample per class and prompt is generated, cleaned as `wvlp describe`
cleans (off-topic drops under the same sentence embedder) and scored by `wvlp.data.quality`:
- *useful rate*: the share of requests whose description is kept **and** sits nearest its own class-name prompt;
- *distinct-2* and *mean within-class similarity*: diversity, reported next to it.
The choice is the grid point with the highest useful rate whose distinct-2 is at least `MIN_DISTINCT_2` (a
describer that repeats one safe sentence is not what the method needs), ties to the higher distinct-2. No image
is looked at, so no evaluation split is used. Writes `<output>/decoding.json` and prints the markdown table that
`docs/results.md` quotes.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path
from typing import Any

import numpy as np

from wvlp.data.clean import clean_descriptions
from wvlp.data.generate import generate_descriptions
from wvlp.data.knowledge import SentenceEmbedder
from wvlp.data.llm import build_backend
from wvlp.data.pipeline import kept_quality, load_describe_config
from wvlp.data.prompts import load_prompts
from wvlp.data.sources import build_source

CONFIGS = Path(__file__).resolve().parents[1] / "dataset_builder" / "configs"
DESCRIBERS = {"smollm2": CONFIGS / "fashion-mnist.yaml", "gemma": CONFIGS / "fashion-mnist-gemma.yaml"}
GRID = [
    {"temperature": 0.7, "top_p": 0.9, "max_new_tokens": 48},
    {"temperature": 0.9, "top_p": 0.95, "max_new_tokens": 48},
    {"temperature": 1.1, "top_p": 0.95, "max_new_tokens": 48},
    {"temperature": 0.9, "top_p": 0.95, "max_new_tokens": 32},
    {"temperature": 0.9, "top_p": 0.95, "max_new_tokens": 64},
]
MIN_DISTINCT_2 = 0.4


def score_point(
    describer: str, backend: Any, decoding: dict, samples: int, cache: Path, embedder: SentenceEmbedder
) -> dict:
    """Generation + cleaning + quality of one describer (its built `backend`) at one grid point."""
    config = load_describe_config(DESCRIBERS[describer])
    source = build_source(config.source)
    start = time.perf_counter()
    raw = generate_descriptions(
        source.classes, load_prompts(config.prompts), backend, samples, cache, decoding, config.seed, progress=False
    )
    seconds = time.perf_counter() - start
    kept, stats = clean_descriptions(raw, source.classes, embedder=embedder, **config.cleaning)
    quality = kept_quality(kept, source, embedder.embed([r["text"] for r in kept]), embedder) if kept else {}
    nearest = quality.get("nearest_prompt_accuracy", 0.0)
    return {
        "describer": describer,
        "llm": backend.name,
        "decoding": decoding,
        "requests": stats["total"],
        "kept": stats["kept"],
        "dropped": {k: v for k, v in stats["dropped"].items() if v},
        "nearest_prompt_accuracy": nearest,
        "nearest_centroid_accuracy": quality.get("nearest_centroid_accuracy", 0.0),
        "useful_rate": stats["kept"] * nearest / max(stats["total"], 1),
        "distinct_1": quality.get("distinct_1", 0.0),
        "distinct_2": quality.get("distinct_2", 0.0),
        "mean_pairwise_similarity": quality.get("mean_pairwise_similarity"),
        "generation_seconds": round(seconds, 1),
        "examples": {r["class_name"]: r["text"] for r in kept[:: max(1, len(kept) // 10)]},
    }


def choose(points: list[dict]) -> dict:
    """The grid point `studies.decoding` picks for one describer (see the module docstring)."""
    diverse = [p for p in points if p["distinct_2"] >= MIN_DISTINCT_2] or points
    return max(diverse, key=lambda p: (round(p["useful_rate"], 3), p["distinct_2"]))


def table(points: list[dict], chosen: dict[str, dict]) -> str:
    """Markdown: one row per describer and grid point, the chosen ones marked."""
    lines = [
        "| describer | temperature | top_p | max_new_tokens | kept | nearest prompt | useful rate | distinct-2 | "
        "within-class sim | s |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    for p in points:
        d = p["decoding"]
        mark = " **(chosen)**" if chosen[p["describer"]] is p else ""
        sim = p["mean_pairwise_similarity"]
        lines.append(
            f"| {p['describer']}{mark} | {d['temperature']} | {d['top_p']} | {d['max_new_tokens']} | "
            f"{p['kept']}/{p['requests']} | {100 * p['nearest_prompt_accuracy']:.1f}% | {100 * p['useful_rate']:.1f}% | "
            f"{p['distinct_2']:.2f} | {'-' if sim is None else f'{sim:.2f}'} | {p['generation_seconds']:.0f} |"
        )
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> None:
    """Runs the grid (cached generations are reused) and writes `<output>/decoding.json`."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--output", type=Path, default=Path("out/decoding"))
    parser.add_argument("--describers", default=",".join(DESCRIBERS), help=f"comma-separated among {list(DESCRIBERS)}")
    parser.add_argument("--samples", type=int, default=1, help="samples per class and prompt at each grid point")
    args = parser.parse_args(argv)
    names = [n.strip() for n in args.describers.split(",") if n.strip()]
    unknown = sorted(set(names) - set(DESCRIBERS))
    if unknown:
        parser.error(f"--describers {unknown}: choose among {list(DESCRIBERS)}")
    args.output.mkdir(parents=True, exist_ok=True)
    embedder = SentenceEmbedder()
    points = []
    for name in names:
        backend = build_backend(load_describe_config(DESCRIBERS[name]).llm)  # loaded once, not per grid point
        for i, decoding in enumerate(GRID):
            cache = args.output / f"{name}-{i}.generations.jsonl"
            points.append(score_point(name, backend, decoding, args.samples, cache, embedder))
            print(json.dumps({k: points[-1][k] for k in ("describer", "decoding", "kept", "useful_rate")}), flush=True)
    chosen = {name: choose([p for p in points if p["describer"] == name]) for name in names}
    result = {
        "grid": GRID,
        "samples_per_prompt": args.samples,
        "min_distinct_2": MIN_DISTINCT_2,
        "points": points,
        "chosen": {name: p["decoding"] for name, p in chosen.items()},
    }
    (args.output / "decoding.json").write_text(json.dumps(result, indent=1, default=float) + "\n")
    print(table(points, chosen))
    print(
        "useful rate, mean over the grid:",
        {n: float(np.mean([p["useful_rate"] for p in points if p["describer"] == n])) for n in names},
    )


if __name__ == "__main__":
    main()
