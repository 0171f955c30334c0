"""The `wvlp` command line; a user error ends a command with one line and status 2 (see `wvlp.common.errors`)."""

import argparse

from wvlp.common.errors import run_command


def demo(args: argparse.Namespace) -> None:
    """describe -> pre-train -> evaluate -> report -> release folders, on the embedded default."""
    from wvlp.demo import run_demo

    run_demo(args.output, args.scale)


def describe(args: argparse.Namespace) -> None:
    """Labels -> LLM descriptions -> cleaned, knowledge-augmented `datasets` corpus."""
    from wvlp.data.pipeline import load_describe_config, run_describe

    overrides = {"output": args.output} if args.output else {}
    folder = run_describe(load_describe_config(args.config, overrides))
    print(f"corpus written to {folder} (load it with datasets.load_dataset({str(folder)!r}, 'descriptions'))")


def pretrain(args: argparse.Namespace) -> None:
    """Pre-training, as `python train/run.py` runs it (`accelerate launch train/run.py` for several GPUs)."""
    from wvlp.train.config import load_config
    from wvlp.train.run import pretrain as run_pretraining

    run_pretraining(load_config(args.config, args.set), resume=args.resume)


def publish(args: argparse.Namespace) -> None:
    """Stage, validate and upload the model, dataset and Space repos of a release (see release/publish.py)."""
    from wvlp.release.publish import run_from_args

    run_from_args(args)


def evaluate(args: argparse.Namespace) -> None:
    """Zero-shot / retrieval / linear probe of a saved model; writes the wvlp-eval/1 JSON (see evaluation/run.py)."""
    import json

    from wvlp.evaluation.run import evaluate_model

    holdout = [c.strip() for c in args.holdout_classes.split(",") if c.strip()] if args.holdout_classes else None
    record = evaluate_model(
        args.model,
        args.data,
        tasks=args.task,
        split=args.split,
        image_root=args.image_root,
        itm_k=args.itm_k,
        fusion_data=None if args.fusion_split == "none" else args.fusion_split,
        max_images=args.max_images,
        holdout_classes=holdout,
        stage=args.stage,
        out=args.out,
    )
    print(json.dumps(record["metrics"], indent=2))
    if args.out:
        print(f"eval JSON written to {args.out}")


def main(argv: list[str] | None = None) -> None:
    """Entry point of the `wvlp` console script."""
    from wvlp.release.publish import add_arguments as add_publish_arguments
    from wvlp.train.options import add_arguments as add_train_arguments

    parser = argparse.ArgumentParser(prog="wvlp", description=__doc__)
    commands = parser.add_subparsers(dest="command", required=True)
    describe_parser = commands.add_parser("describe", help="write the description corpus of a labelled image source")
    describe_parser.add_argument("--config", help="YAML (see dataset_builder/configs/)")
    describe_parser.add_argument("--output", help="corpus folder (overrides the config)")
    describe_parser.set_defaults(func=describe)
    train_parser = commands.add_parser("train", help="pre-train (accelerate launch train/run.py for several GPUs)")
    add_train_arguments(train_parser)
    train_parser.set_defaults(func=pretrain)
    demo_parser = commands.add_parser("demo", help="the main job on the embedded default")
    demo_parser.add_argument(
        "--scale", choices=("full", "ci"), default="full", help="ci: the same code path at a size a CI job affords"
    )
    demo_parser.add_argument("--output", default="out/fashion-mnist", help="folder of every stage's output")
    demo_parser.set_defaults(func=demo)
    publish_parser = commands.add_parser("publish", help="release the model, dataset and Space on the Hub")
    add_publish_arguments(publish_parser)
    publish_parser.set_defaults(func=publish)
    evaluate_parser = commands.add_parser("evaluate", help="zero-shot, retrieval and linear-probe evaluation -> JSON")
    evaluate_parser.add_argument("--model", required=True, help="saved model folder (save_pretrained)")
    evaluate_parser.add_argument(
        "--task", default="all", help="zero-shot, retrieval, linear-probe (comma-separated) or all"
    )
    evaluate_parser.add_argument(
        "--data", required=True, help="corpus folder, Karpathy JSON or save_to_disk dataset folder"
    )
    evaluate_parser.add_argument("--image-root", help="image folder of a Karpathy JSON")
    evaluate_parser.add_argument("--split", default="test")
    evaluate_parser.add_argument("--itm-k", type=int, default=16, help="ITM re-ranking depth (0: ITC only)")
    evaluate_parser.add_argument(
        "--fusion-split",
        default="auto",
        help="split whose queries choose the ITC+ITM fusion: auto (validation, val or train; never --split), "
        "a split name, or none",
    )
    evaluate_parser.add_argument("--max-images", type=int, help="first N images of the split only (N >= 1)")
    evaluate_parser.add_argument("--holdout-classes", help="classes held out in pre-training, e.g. Bag,Sandal")
    evaluate_parser.add_argument("--stage", default="pre-trained", help="checkpoint stage recorded in the JSON")
    evaluate_parser.add_argument("--out", help="eval JSON path (plots are written next to it)")
    evaluate_parser.set_defaults(func=evaluate)
    args = parser.parse_args(argv)
    run_command(f"wvlp {args.command}", args.func, args)


if __name__ == "__main__":
    main()
