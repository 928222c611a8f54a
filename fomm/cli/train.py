"""``fomm train``: train FOMM (or a baseline) on a folder of videos; one process, or several via ``torchrun``."""

from __future__ import annotations

import argparse

from fomm.cli.common import device_name, int_range, positive_int, seed
from fomm.cli.safety import refuse_train_overwrite
from fomm.families import family_names, get_family


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("train", help="train a model on a video dataset (CPU, one GPU, or torchrun for many)",
                       description="Train on ROOT/train (folders of frames, video files or strip images). "
                                   "Epochs, repeats, milestones, learning rates and batch size come from the "
                                   "config unless given here. Several GPUs/machines: "
                                   "torchrun --nproc_per_node N -m fomm train ...")
    p.add_argument("--config", required=True,
                   help="bundled config name (actions-64, shapes-64, vox-256, ...) or a YAML file")
    p.add_argument("--data", help="dataset folder (overrides dataset_params.root_dir)")
    p.add_argument("--out", required=True, help="run folder: checkpoints, logs, visualisations")
    p.add_argument("--model", default="fomm", choices=family_names(),
                   help="model family: " + ", ".join(family_names()) + " (default: %(default)s)")
    p.add_argument("--resume", nargs="?", const=True, default=None, metavar="CHECKPOINT",
                   help="continue the run in --out from its latest checkpoint (or from CHECKPOINT)")
    p.add_argument("--init-checkpoint", help="start from these weights with fresh optimizers (fine-tuning)")
    p.add_argument("--epochs", type=positive_int, help="train_params.num_epochs")
    p.add_argument("--num-repeats", type=positive_int, help="train_params.num_repeats")
    p.add_argument("--batch-size", type=positive_int, help="train_params.batch_size (global, over all processes)")
    p.add_argument("--checkpoint-freq", type=positive_int, help="save a checkpoint every N epochs (N >= 1)")
    p.add_argument("--device", type=device_name, default="auto",
                   help="cpu, cuda, cuda:1 ... (default: cuda when available)")
    p.add_argument("--workers", type=int_range(0, 256), default=2,
                   help="data loading processes per training process, 0-256 (0: load in the training process)")
    p.add_argument("--seed", type=seed, default=0, help="random seed, 0 to 2**32-1 (default: %(default)s)")
    p.add_argument("--amp", action=argparse.BooleanOptionalAction, default=None,
                   help="mixed precision (default: on for CUDA, off on CPU)")
    p.add_argument("--visualize-every", type=positive_int, default=None, metavar="STEPS",
                   help="write a PNG grid every N iterations (default: once per epoch)")
    p.add_argument("--max-steps-per-epoch", type=positive_int, default=None, help=argparse.SUPPRESS)
    p.add_argument("-q", "--quiet", action="store_true", help="no progress bar")
    p.set_defaults(func=main)

    a = sub.add_parser("average-checkpoints", help="average the weights of several checkpoints of one run",
                       description="Write an inference checkpoint (original container, no optimizer state) whose "
                                   "weights are the mean of the given checkpoints' (weight averaging). Average "
                                   "checkpoints one run saved along its schedule; one checkpoint just strips it.")
    a.add_argument("checkpoints", nargs="+", metavar="CHECKPOINT", help="checkpoints of one config")
    a.add_argument("-o", "--out", required=True, help="the averaged .pth.tar to write")
    a.add_argument("--model", default="fomm", choices=family_names(),
                   help="which model's networks to keep (default: %(default)s)")
    a.set_defaults(func=average_main)


def main(args: argparse.Namespace) -> int:
    from fomm.train.trainer import TrainOptions, train

    refuse_train_overwrite(args)  # the trainer checks the rest (resume point, dataset in a config) before writing
    result = train(TrainOptions(
        config=args.config, out=args.out, data=args.data, model=args.model, resume=args.resume,
        init_checkpoint=args.init_checkpoint, device=args.device, epochs=args.epochs, num_repeats=args.num_repeats,
        batch_size=args.batch_size, checkpoint_freq=args.checkpoint_freq, workers=args.workers, seed=args.seed,
        amp=args.amp, visualize_every=args.visualize_every, max_steps_per_epoch=args.max_steps_per_epoch,
        progress=not args.quiet))
    print(f"done: {result.epochs_completed} epoch(s), {result.steps} steps; last checkpoint {result.last_checkpoint}")
    return 0


def average_main(args: argparse.Namespace) -> int:
    from fomm.io.atomic import refuse_input_overwrite
    from fomm.train.trainer import average_checkpoints

    refuse_input_overwrite(args.out, args.checkpoints)
    out = average_checkpoints(args.checkpoints, args.out, keep=get_family(args.model).inference_parts)
    print(f"wrote {out}: the mean of {len(args.checkpoints)} checkpoint(s)")
    return 0
