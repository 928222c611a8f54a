"""What each subcommand reads and writes, for the one rule every writer follows: an output never destroys an input.

Each ``main`` calls :func:`fomm.io.atomic.refuse_input_overwrite` once, before any work (before a model is loaded),
with the lists built here. Commands that replace an output whole (a video, a frame folder, a checkpoint, a split
tree) pass it as an output; commands that write *into* a folder (a run folder, an ONNX export, a prepared dataset)
pass the folder as ``folders`` and the files they will write as outputs, so the folder may hold the inputs (an
export beside its checkpoint) while none of them is ever replaced.

Paths that do not exist are ignored by the check, so options left at names (``--config vox-256``) are harmless.
"""

from __future__ import annotations

import argparse
import os
import re
from pathlib import Path

PathList = list[str | os.PathLike | None]


def model_inputs(args: argparse.Namespace) -> PathList:
    """The files ``--checkpoint``/``--config`` (and a ``--pretrained`` model's weights) name."""
    paths: PathList = [getattr(args, "checkpoint", None), getattr(args, "config", None)]
    name = getattr(args, "pretrained", None)
    if name is not None:
        from fomm.pretrained import REGISTRY

        entry = REGISTRY.get(name)
        paths.append(entry.path if entry is not None else None)
    return paths


def folder_files(folder: str | os.PathLike | None) -> PathList:
    """``folder`` and the entries directly in it (an ONNX export: sidecar and graphs), or nothing."""
    if folder is None or not os.path.isdir(folder):
        return [folder]
    return [folder, *sorted(Path(folder).iterdir())]


def animate_inputs(args: argparse.Namespace) -> PathList:
    """Everything ``fomm animate`` reads: the pair, the model files, the ONNX export and each file in it."""
    return [args.source, args.driving, *model_inputs(args), *folder_files(getattr(args, "onnx_dir", None))]


def crop_outputs(out: str) -> list[Path]:
    """``fomm crop``'s possible outputs before the segments are known: ``out`` itself and the existing entries a
    multi-segment run would write (``NAME_00.mp4``, ``NAME_01.mp4``, ... beside it, or ``out/00/``, ... inside a
    frame folder), so ``--video clip_01.mp4 -o clip.mp4`` is refused before the face tracking, not after."""
    p = Path(out)
    outputs = [p]
    if out.endswith(("/", os.sep)) or p.is_dir():
        if p.is_dir():
            outputs += [c for c in p.iterdir() if re.fullmatch(r"\d{2,}", c.name)]
        return outputs
    folder = p.parent if str(p.parent) else Path(".")
    if folder.is_dir():
        pattern = re.compile(re.escape(p.stem) + r"_\d{2,}" + re.escape(p.suffix))
        outputs += [c for c in folder.iterdir() if pattern.fullmatch(c.name)]
    return outputs


def train_outputs(out: str | os.PathLike) -> list[Path]:
    """The files ``fomm train`` rewrites in its run folder (checkpoints get new epoch names, except this one)."""
    run = Path(out)
    return [run / "config.yaml", run / "log.jsonl", run / "log.csv", run / "checkpoints" / "interrupted.pth.tar"]


def refuse_train_overwrite(args: argparse.Namespace) -> None:
    """``fomm train``'s check before any work: the run folder is not an input and its fixed files (logs, the
    interrupt checkpoint, ``config.yaml``) are not ``--data``, ``--init-checkpoint`` or ``--config``.

    ``config.yaml`` against ``--config`` is the trainer's to judge: a run resumed with its own ``config.yaml`` as
    ``--config`` leaves the file untouched, and only options that would change it are refused
    (:meth:`fomm.train.trainer.Trainer._plan_config_file`). The trainer also checks what depends on the resume
    point (the epoch checkpoints still to write, against the ``--resume`` checkpoint) and the dataset folder a
    config names (:func:`fomm.train.trainer.refuse_run_dir_in_data`), before it writes anything.
    """
    from fomm.io.atomic import refuse_input_overwrite

    outputs = train_outputs(args.out)
    others = [args.data, args.init_checkpoint]
    refuse_input_overwrite([p for p in outputs if p.name != "config.yaml"], [args.config, *others], folders=args.out)
    refuse_input_overwrite([p for p in outputs if p.name == "config.yaml"], others)


def eval_outputs(out: str | os.PathLike) -> list[Path]:
    """What ``fomm eval`` writes in its run folder: the reports, and the folders whose entries it replaces."""
    run = Path(out)
    return [run / name for name in ("run.json", "metrics.json", "metrics.csv", "per_video.csv", "metrics.md",
                                    "qualitative.png", "generated", "status", "scores", "plots")]


def refuse_eval_overwrite(args: argparse.Namespace) -> None:
    """``fomm eval``'s check: ``compare --out`` must not be one of the runs' files it merges; a reconstruction's run
    folder must not be, or lie inside, the dataset (its frames and reports would become dataset entries) and its
    own report files and folders must not be or hold an input."""
    from fomm.io.atomic import refuse_input_overwrite

    if getattr(args, "eval_command", None) == "compare":
        runs = list(args.runs)
        refuse_input_overwrite(args.out, [*runs, *(Path(r) / "metrics.json" for r in runs)])
        return
    if args.out is None:
        return  # run_eval reports the missing --out
    inputs = [getattr(args, "dataset", None), args.data, args.checkpoint, args.config]
    refuse_input_overwrite(eval_outputs(args.out), inputs, folders=args.out)


__all__ = ["animate_inputs", "crop_outputs", "eval_outputs", "folder_files", "model_inputs",
           "refuse_eval_overwrite", "refuse_train_overwrite", "train_outputs"]
