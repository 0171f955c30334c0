"""Samples/s of the full Trainer pipeline (collator + all losses + EMA callback) vs a plain PyTorch loop that runs
the same model, losses, collator and batches — measured side by side in one run; the ratio is the Trainer's overhead.

Usage: python bench/train_throughput.py [--init default|tiny] [--steps 8] [--batch-size 16]
The corpus is the small real test corpus (Fashion-MNIST images + WordNet-gloss descriptions), written to a temp dir.
"""

import argparse
import tempfile
import time
from pathlib import Path

import torch
from transformers import set_seed

from wvlp.data.template_corpus import write_template_corpus
from wvlp.train.callbacks import CollatorEpochCallback, MomentumUpdateCallback
from wvlp.train.collator import AugmentConfig, DescriptionPool, DistillationCollator
from wvlp.train.config import load_config
from wvlp.train.run import build_model_and_processor, load_corpus
from wvlp.train.trainer import WVLPTrainer

CONFIG = Path(__file__).resolve().parent.parent / "train" / "configs" / "tiny.yaml"


def setup(corpus: Path, out: Path, init: str, steps: int, batch_size: int):
    """Config, model, collator and training rows of one measured run (identical for both loops)."""
    overrides = [
        f"data.path={corpus}",
        f"training.output_dir={out}",
        f"training.max_steps={steps}",
        f"training.per_device_train_batch_size={batch_size}",
        "training.save_steps=100000",
        "training.logging_steps=100000",
        f"model.init={init}",
    ]
    if init == "default":
        overrides += ["model.image_size=96", "model.config={queue_size: 1024}"]
    config = load_config(CONFIG, overrides)
    set_seed(0)
    images, descriptions = load_corpus(config.data)
    model, processor = build_model_and_processor(config.model)
    collator = DistillationCollator(
        processor,
        DescriptionPool.from_dataset(descriptions["train"]),
        max_length=32,
        knowledge_max_length=16,
        num_knowledge=2,
        augment=AugmentConfig(),
        augmented_view=model.config.pretraining_config.imc_loss_weight > 0,
    )
    return config, model, collator, images["train"]


def trainer_run(corpus: Path, init: str, steps: int, batch_size: int) -> float:
    """Seconds per step of WVLPTrainer.train (after one warm-up step)."""
    with tempfile.TemporaryDirectory() as out:
        config, model, collator, rows = setup(corpus, Path(out), init, steps + 1, batch_size)
        trainer = WVLPTrainer(
            model=model,
            args=config.training,
            train_dataset=rows,
            data_collator=collator,
            callbacks=[MomentumUpdateCallback(), CollatorEpochCallback(collator)],
        )
        times = []

        class Timer(MomentumUpdateCallback):
            def on_step_end(self, args, state, control, **kwargs):
                times.append(time.perf_counter())

        trainer.add_callback(Timer())
        trainer.train()
        return (times[-1] - times[0]) / (len(times) - 1)


def plain_run(corpus: Path, init: str, steps: int, batch_size: int) -> float:
    """Seconds per step of a hand-written loop: DataLoader + collator, forward, backward, AdamW, EMA."""
    with tempfile.TemporaryDirectory() as out:
        config, model, collator, rows = setup(corpus, Path(out), init, steps + 1, batch_size)
        loader = torch.utils.data.DataLoader(rows, batch_size=batch_size, shuffle=True, collate_fn=collator)
        optimizer = torch.optim.AdamW(
            [p for p in model.parameters() if p.requires_grad],
            lr=config.training.learning_rate,
            weight_decay=config.training.weight_decay,
        )
        model.train()
        times, batches = [], iter(loader)
        for _ in range(steps + 1):
            try:
                batch = next(batches)
            except StopIteration:
                batches = iter(loader)
                batch = next(batches)
            loss = model(**batch, alpha=model.config.pretraining_config.alpha).loss
            loss.backward()
            torch.nn.utils.clip_grad_norm_(model.parameters(), config.training.max_grad_norm)
            optimizer.step()
            optimizer.zero_grad(set_to_none=True)
            model.momentum_update()
            times.append(time.perf_counter())
        return (times[-1] - times[0]) / (len(times) - 1)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--init", default="default", choices=["default", "tiny"])
    parser.add_argument("--steps", type=int, default=6)
    parser.add_argument("--batch-size", type=int, default=16)
    args = parser.parse_args()
    torch.set_flush_denormal(True)
    with tempfile.TemporaryDirectory() as tmp:
        corpus = write_template_corpus(Path(tmp) / "corpus", images_per_split=256)
        plain = plain_run(corpus, args.init, args.steps, args.batch_size)
        trainer = trainer_run(corpus, args.init, args.steps, args.batch_size)
    n = args.batch_size
    print(f"model={args.init} batch={n} steps={args.steps} threads={torch.get_num_threads()}")
    print(f"plain PyTorch loop : {plain:.3f} s/step  {n / plain:.2f} samples/s")
    print(f"WVLPTrainer        : {trainer:.3f} s/step  {n / trainer:.2f} samples/s")
    print(f"throughput ratio Trainer/plain: {plain / trainer:.3f}  (goal >= 0.90)")


if __name__ == "__main__":
    main()
