"""The `wvlp` command line."""

import argparse


def demo(args: argparse.Namespace) -> None:
    """Runs what exists of the main job on the embedded default and says what does not exist yet."""
    import torch

    from dataset_builder.fashion_mnist import CLASS_NAMES, load_fashion_mnist
    from modeling_wvlp import build_default_model, build_default_processor

    torch.manual_seed(0)
    images, labels = load_fashion_mnist("test")
    images, labels = images[: args.batch_size], torch.as_tensor(labels[: args.batch_size].astype("int64"))
    model = build_default_model(for_pretraining=True)
    processor = build_default_processor()
    texts = [f"a photo of a {CLASS_NAMES[i].lower()}" for i in labels]
    batch = dict(processor(images=list(images), text=texts, max_length=16))
    batch.pop("token_type_ids", None)
    out = model(**batch, category_ids=labels)
    out.loss.backward()
    students = sum(p.numel() for p in model.wvlp.parameters())
    print(f"default model: EfficientNet-Lite0 + MiniLM-L6 (packaged weights), {students / 1e6:.1f}M parameters")
    print("one pre-training step on Fashion-MNIST test images:")
    for name, value in out.items():
        if name.endswith("loss"):
            print(f"  {name:>15}: {value.item():.4f}")
    print("not yet: describe -> pre-train -> evaluate -> release (the end-to-end main job is still being built)")


def describe(args: argparse.Namespace) -> None:
    """Labels -> LLM descriptions -> cleaned, knowledge-augmented `datasets` corpus."""
    from dataset_builder.pipeline import load_describe_config, run_describe

    overrides = {"output": args.output} if args.output else {}
    folder = run_describe(load_describe_config(args.config, overrides))
    print(f"corpus written to {folder} (load it with datasets.load_dataset({str(folder)!r}, 'descriptions'))")


def pretrain(args: argparse.Namespace) -> None:
    """Same as `python train/run.py`."""
    from train.run import main as run_main

    run_main(["--config", args.config, *[item for s in args.set for item in ("--set", s)]]
             + (["--resume"] if args.resume else []))


def publish(args: argparse.Namespace) -> None:
    """Stage, validate and upload the model, dataset and Space repos of a release (see train/publish.py)."""
    from train.publish import run_from_args

    run_from_args(args)


def main(argv: list[str] | None = None) -> None:
    """Entry point of the `wvlp` console script."""
    parser = argparse.ArgumentParser(prog="wvlp", description=__doc__)
    commands = parser.add_subparsers(dest="command", required=True)
    describe_parser = commands.add_parser("describe", help="write the description corpus of a labelled image source")
    describe_parser.add_argument("--config", help="YAML (see dataset_builder/configs/)")
    describe_parser.add_argument("--output", help="corpus folder (overrides the config)")
    describe_parser.set_defaults(func=describe)
    train_parser = commands.add_parser("train", help="pre-train (accelerate launch train/run.py for several GPUs)")
    train_parser.add_argument("--config", required=True)
    train_parser.add_argument("--set", action="append", default=[], metavar="KEY=VALUE")
    train_parser.add_argument("--resume", action="store_true")
    train_parser.set_defaults(func=pretrain)
    demo_parser = commands.add_parser("demo", help="the main job on the embedded default")
    demo_parser.add_argument("--batch-size", type=int, default=8)
    demo_parser.set_defaults(func=demo)
    publish_parser = commands.add_parser("publish", help="release the model, dataset and Space on the Hub")
    from train.publish import add_arguments as add_publish_arguments

    add_publish_arguments(publish_parser)
    publish_parser.set_defaults(func=publish)
    args = parser.parse_args(argv)
    args.func(args)


if __name__ == "__main__":
    main()
