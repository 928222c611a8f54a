"""The training loop behind ``fomm train``: one process (CPU or one GPU) or several through ``torchrun`` + DDP.

Run directory layout (``out``)::

    config.yaml                        effective config (CLI overrides applied); replaced atomically, and only
                                       when the configuration changed (a resumed run leaves it as it is)
    log.jsonl, log.csv                 every iteration's weighted losses, total, learning rates (rank 0)
    checkpoints/00000009-checkpoint.pth.tar   original container + optimizer/scheduler/RNG state, atomic writes
    checkpoints/interrupted.pth.tar    weights at Ctrl-C / crash mid-epoch (not an exact resume point)
    visualizations/epoch_0009.png      source | driving+kp | deformed | occlusion | prediction
    ranks/rank<r>.json                 per-rank sample indices and weight checksums (multi-process runs)

Inputs are never written over: before anything is written, the run folder must lie outside the dataset folder
and none of the files the run will write (config.yaml when it changes, logs, the checkpoints of the epochs still to
train, the interrupt checkpoint, grids) may be ``--config``, the checkpoint resumed from or ``--init-checkpoint``.

Determinism: data order, augmentation and the equivariance transforms are all drawn from streams keyed by
``(seed, epoch[, rank])``, so a run resumed from an epoch checkpoint repeats exactly what the uninterrupted run
would have done (up to floating-point non-determinism of the device).

``epoch`` in a checkpoint is the number of the last *completed* epoch (0-based); training resumes at the next.
Learning rates follow ``MultiStepLR(epoch_milestones, gamma=0.1)`` stepped once per epoch, Adam with
``betas=(0.5, 0.999)`` as in the original trainers. In DDP, ``train_params.batch_size`` is the *global* batch,
split evenly over the processes.
"""

from __future__ import annotations

import copy
import csv
import hashlib
import json
import os
import re
import time
import warnings
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.distributed as dist
import yaml
from torch import nn
from torch.utils.data import DataLoader, DistributedSampler

from fomm.checkpoint import atomic_save, load_container, load_state_dict_strict, require_finite, state_dict_mismatch
from fomm.errors import CheckpointError, ConfigError, FommError, InputError, OutputError
from fomm.io.atomic import write_text_atomic

CHECKPOINT_RE = re.compile(r"^(\d{8})-checkpoint\.pth\.tar$")
MAX_BAD_STEPS = 20


class TrainingError(FommError):
    """Training cannot go on (e.g. losses stay NaN); the last checkpoint is intact."""


@dataclass
class TrainOptions:
    """Everything ``fomm train`` accepts. ``None`` means "take it from the config's ``train_params``"."""

    config: Any
    out: str | os.PathLike
    data: str | os.PathLike | None = None  # overrides dataset_params.root_dir
    model: str = "fomm"
    resume: str | os.PathLike | bool | None = None  # True: latest checkpoint in out/checkpoints
    init_checkpoint: str | os.PathLike | None = None  # start from these weights (fresh optimizers)
    device: str = "auto"
    epochs: int | None = None
    num_repeats: int | None = None
    batch_size: int | None = None
    checkpoint_freq: int | None = None
    workers: int = 2
    seed: int = 0
    amp: bool | None = None  # default: on for CUDA (bf16 if supported, else fp16 + GradScaler)
    visualize_every: int | None = None  # iterations; default: once per epoch
    max_steps_per_epoch: int | None = None  # cut epochs short (smoke tests, quick looks)
    progress: bool = True
    log: Callable[[str], None] = print


@dataclass
class TrainResult:
    run_dir: Path
    last_checkpoint: Path | None
    epochs_completed: int
    steps: int
    last_losses: dict[str, float] = field(default_factory=dict)
    skipped_steps: int = 0


# ---------------------------------------------------------------------------------------------------------------
# distributed set-up
# ---------------------------------------------------------------------------------------------------------------
@dataclass
class DistContext:
    rank: int = 0
    world_size: int = 1
    local_rank: int = 0
    device: torch.device = torch.device("cpu")
    initialized_here: bool = False

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    @property
    def distributed(self) -> bool:
        return self.world_size > 1


def init_distributed(device: str = "auto") -> DistContext:
    """Read torchrun's environment (``RANK``, ``WORLD_SIZE``, ``LOCAL_RANK``) and join the process group.

    NCCL on CUDA, gloo on CPU. Without torchrun's variables this is a single process.
    """
    world = int(os.environ.get("WORLD_SIZE", "1"))
    rank = int(os.environ.get("RANK", "0"))
    local = int(os.environ.get("LOCAL_RANK", "0"))
    if device == "auto":
        device = "cuda" if torch.cuda.is_available() else "cpu"
    dev = torch.device(device)
    if dev.type == "cuda":
        if not torch.cuda.is_available():
            raise FommError(f"device '{device}' requested but CUDA is not available here; use --device cpu")
        if dev.index is None:
            dev = torch.device("cuda", local if world > 1 else 0)
        torch.cuda.set_device(dev)
    ctx = DistContext(rank=rank, world_size=world, local_rank=local, device=dev)
    if world > 1 and not dist.is_initialized():
        dist.init_process_group(backend="nccl" if dev.type == "cuda" else "gloo")
        ctx.initialized_here = True
    return ctx


def _seed_for(*parts: int) -> int:
    return int(np.random.SeedSequence([int(p) for p in parts]).generate_state(1, dtype=np.uint64)[0] >> 1)


# ---------------------------------------------------------------------------------------------------------------
# checkpoints
# ---------------------------------------------------------------------------------------------------------------
def list_checkpoints(run_dir: str | os.PathLike) -> list[tuple[int, Path]]:
    """``(epoch, path)`` of the epoch checkpoints in ``run_dir/checkpoints``, oldest first."""
    folder = Path(run_dir) / "checkpoints"
    if not folder.is_dir():
        return []
    found = []
    for p in folder.iterdir():
        m = CHECKPOINT_RE.match(p.name)
        if m:
            found.append((int(m.group(1)), p))
    return sorted(found)


def strip_checkpoint(src: str | os.PathLike, dst: str | os.PathLike,
                     keep: tuple[str, ...] = ("generator", "kp_detector")) -> Path:
    """Write an inference-only copy of a training checkpoint (no optimizer/scheduler/RNG state, no
    discriminator by default), in the original container. Used to make the shipped models small."""
    container = _load_parts(src, keep)
    return atomic_save(_inference_container({k: container[k] for k in keep}, container), dst)


def _load_parts(src: str | os.PathLike, keep: tuple[str, ...]) -> dict[str, Any]:
    """The checkpoint at ``src``, which must hold every entry named in ``keep``."""
    container = load_container(src)
    missing = [k for k in keep if k not in container]
    if missing:
        raise CheckpointError(f"{src}: no {', '.join(missing)} entry to keep")
    require_finite(container, keep, src)  # a NaN would spread to every averaged weight, silently
    return container


def _inference_container(parts: dict[str, Any], source: Mapping[str, Any]) -> dict[str, Any]:
    """``parts`` with ``source``'s epoch and training metadata, less its RNG state (inference needs none)."""
    out = dict(parts, epoch=source.get("epoch", 0))
    meta = source.get("fomm_train")
    if isinstance(meta, dict):
        out["fomm_train"] = {k: v for k, v in meta.items() if k != "rng"}
    return out


def average_checkpoints(srcs: Sequence[str | os.PathLike], dst: str | os.PathLike,
                        keep: tuple[str, ...] = ("generator", "kp_detector")) -> Path:
    """Write an inference checkpoint whose weights are the mean of several checkpoints' (weight averaging, as in
    stochastic weight averaging), in the original container like :func:`strip_checkpoint`.

    Averaging the checkpoints a run saved along one learning-rate schedule lands nearer the middle of the basin
    they wander around than any single one of them. Floating-point tensors, batch-norm running statistics
    included, are averaged in float64 and stored in their own dtype; integer ones (``num_batches_tracked``) are
    taken from the last checkpoint, as are ``epoch`` and the training metadata.

    Raises:
        CheckpointError: no checkpoint given, one that cannot be read, lacks a ``keep`` entry, or whose tensors
            differ in names or shapes from the first's (checkpoints of different configs).
    """
    srcs = [Path(s) for s in srcs]
    if not srcs:
        raise CheckpointError("no checkpoints to average; pass one or more .pth.tar files")
    containers = [_load_parts(s, keep) for s in srcs]
    first, last = containers[0], containers[-1]
    parts: dict[str, Any] = {}
    for part in keep:
        for src, c in zip(srcs[1:], containers[1:], strict=True):
            problems = state_dict_mismatch(first[part], c[part])
            if problems:
                raise CheckpointError(f"{src}: '{part}' does not match {srcs[0]}'s ({'; '.join(problems)}); "
                                      "average checkpoints of one config only")
        parts[part] = {
            key: (sum(c[part][key].double() for c in containers) / len(containers)).to(value.dtype)
            if value.is_floating_point() else last[part][key]
            for key, value in first[part].items()}
    out = _inference_container(parts, last)
    out.setdefault("fomm_train", {})["averaged_epochs"] = [c.get("epoch") for c in containers]
    return atomic_save(out, dst)


def _average_buffers(nets: Any, world_size: int) -> None:
    """Average floating-point buffers (batch-norm running statistics) over the processes.

    DDP keeps parameters identical but each process updates its own running statistics after the last
    broadcast; without SyncBatchNorm (CPU) they drift apart. Averaging them once per epoch gives every rank,
    and the saved checkpoint, the same statistics, estimated from all processes' data."""
    for net in nets:
        for buf in net.buffers():
            if buf.is_floating_point():
                dist.all_reduce(buf)
                buf /= world_size


def _param_digest(module: nn.Module) -> str:
    h = hashlib.sha256()
    for name, t in sorted(module.state_dict().items()):
        h.update(name.encode())
        h.update(t.detach().cpu().contiguous().numpy().tobytes())
    return h.hexdigest()


# ---------------------------------------------------------------------------------------------------------------
# logging
# ---------------------------------------------------------------------------------------------------------------
class LossLog:
    """Appends one record per iteration to ``log.jsonl`` and ``log.csv`` (columns fixed by the first record;
    a resumed run appends to the same files)."""

    def __init__(self, run_dir: Path) -> None:
        self.jsonl = open(run_dir / "log.jsonl", "a")
        self.csv_path = run_dir / "log.csv"
        self.fields: list[str] | None = None
        if self.csv_path.is_file() and self.csv_path.stat().st_size > 0:
            with open(self.csv_path, newline="") as fh:
                self.fields = next(csv.reader(fh), None)
        self.csv = open(self.csv_path, "a", newline="")
        self.writer: Any = None

    def write(self, record: Mapping[str, Any]) -> None:
        self.jsonl.write(json.dumps(record) + "\n")
        if self.fields is None:
            self.fields = list(record)
            csv.writer(self.csv).writerow(self.fields)
        if self.writer is None:
            self.writer = csv.DictWriter(self.csv, fieldnames=self.fields, extrasaction="ignore")
        self.writer.writerow(record)

    def flush(self) -> None:
        self.jsonl.flush()
        self.csv.flush()

    def close(self) -> None:
        self.jsonl.close()
        self.csv.close()


# ---------------------------------------------------------------------------------------------------------------
# the run folder against the inputs
# ---------------------------------------------------------------------------------------------------------------
#: the folders under ``out`` that training writes files into (besides ``out`` itself)
RUN_SUBFOLDERS = ("checkpoints", "visualizations", "ranks")
_MISSING = object()


def config_file(config: Any) -> Path | None:
    """The YAML file ``config`` names, if it names an existing one (a bundled name or a loaded config is no file)."""
    if isinstance(config, (str, os.PathLike)) and os.path.isfile(config):
        return Path(config)
    return None


def config_text(cfg: Any) -> str:
    """What ``config.yaml`` in the run folder holds for ``cfg``."""
    return yaml.safe_dump(cfg.to_dict(), sort_keys=False)


def saved_config(model: str, path: str | os.PathLike) -> Any:
    """The configuration the YAML at ``path`` describes, as the trainer would write it, parsed back (defaults filled
    in, numeric strings converted), so two files that differ only in layout, comments or defaults compare equal;
    ``_MISSING`` when it is not a readable config of ``model``."""
    from fomm.train.factory import load_training_config

    try:
        return yaml.safe_load(config_text(load_training_config(model, str(path))))
    except (FommError, OSError, ValueError, TypeError, AttributeError, yaml.YAMLError):
        return _MISSING


def config_differences(old: Any, new: Any, prefix: str = "") -> list[str]:
    """The dotted keys (``train_params.num_epochs``) whose values differ between two parsed configs."""
    if isinstance(old, dict) and isinstance(new, dict):
        keys = list(old) + [k for k in new if k not in old]
        return [d for k in keys for d in config_differences(old.get(k, _MISSING), new.get(k, _MISSING),
                                                            f"{prefix}{k}.")]
    return [] if old == new else [prefix.rstrip(".") or "(the whole file)"]


def refuse_run_dir_in_data(run_dir: str | os.PathLike, root: str | os.PathLike) -> None:
    """Stop when training into ``run_dir`` would write into the dataset folder ``root`` (symlinks resolved): the
    run folder is the dataset or lies inside it, or the dataset lies in one of the folders training fills.

    Raises:
        OutputError: one line naming both folders and what to do.
    """
    real_root = Path(os.path.realpath(root))
    real_run = Path(os.path.realpath(run_dir))
    if real_run.is_relative_to(real_root):
        where = "is" if real_run == real_root else "lies inside"
        raise OutputError(f"--out {run_dir} {where} the dataset folder {root} (dataset_params.root_dir): the "
                          f"checkpoints and grids written there would change the data; choose an --out outside it")
    for sub in RUN_SUBFOLDERS:
        folder = Path(run_dir) / sub
        if real_root.is_relative_to(Path(os.path.realpath(folder))):
            raise OutputError(f"the dataset folder {root} (dataset_params.root_dir) is or lies inside {folder}, which "
                              f"training writes into; move the data or choose another --out")


# ---------------------------------------------------------------------------------------------------------------
# the loop
# ---------------------------------------------------------------------------------------------------------------
def _prepare_config(opts: TrainOptions) -> Any:
    from fomm.train.factory import load_training_config

    cfg = copy.deepcopy(load_training_config(opts.model, opts.config))
    tp = cfg.train_params
    if not tp:
        raise ConfigError(f"config {getattr(cfg, 'name', opts.config)} has no train_params section")
    if opts.data is not None:
        given = cfg.dataset_params.get("root_dir")
        # The config's own spelling of the same folder is kept, so resuming with --data does not change config.yaml.
        if not (isinstance(given, str) and os.path.realpath(given) == os.path.realpath(opts.data)):
            cfg.dataset_params["root_dir"] = str(opts.data)
    if opts.epochs is not None:
        tp["num_epochs"] = int(opts.epochs)
    if opts.num_repeats is not None:
        tp["num_repeats"] = int(opts.num_repeats)
    if opts.batch_size is not None:
        tp["batch_size"] = int(opts.batch_size)
    if opts.checkpoint_freq is not None:
        tp["checkpoint_freq"] = int(opts.checkpoint_freq)
    for key in ("num_epochs", "batch_size"):
        if key not in tp:
            raise ConfigError(f"train_params.{key} is missing from the config")
        if int(tp[key]) < 1:
            raise ConfigError(f"train_params.{key} must be >= 1, got {tp[key]}")
    return cfg


def _dataset(cfg: Any, seed: int) -> Any:
    from fomm.datasets.frames import DatasetRepeater, FramesDataset

    params = dict(cfg.dataset_params)
    if "root_dir" not in params:
        raise ConfigError("no dataset: pass --data ROOT or set dataset_params.root_dir in the config")
    params.pop("pairs_list", None)  # only used for animation pairs at test time
    dataset = FramesDataset.from_config(params, is_train=True, seed=seed)
    return DatasetRepeater(dataset, int(cfg.train_params.get("num_repeats", 1)))


def train(opts: TrainOptions) -> TrainResult:
    """Train (or resume) a model; see the module docstring. Returns where things were written."""
    ctx = init_distributed(opts.device)
    try:
        return Trainer(opts, ctx).run()
    finally:
        if ctx.initialized_here and dist.is_initialized():
            dist.destroy_process_group()


def _apply_config_milestones(sched: torch.optim.lr_scheduler.MultiStepLR, milestones: list[int]) -> list[int] | None:
    """Make the config's ``epoch_milestones`` win over the ones saved in a resumed scheduler, so a run can be
    lengthened or shortened on resume (``num_epochs`` already comes from the config). The learning rate is set to
    what the new schedule gives at the resume epoch. Returns the replaced milestones (``None``: unchanged)."""
    from collections import Counter

    if sched.milestones == Counter(milestones):
        return None
    replaced = sorted(sched.milestones.elements())
    sched.milestones = Counter(milestones)
    drops = sum(1 for m in milestones if m <= sched.last_epoch)
    for group, base in zip(sched.optimizer.param_groups, sched.base_lrs, strict=True):
        group["lr"] = base * sched.gamma ** drops
    sched._last_lr = [group["lr"] for group in sched.optimizer.param_groups]
    return replaced


# Heads a config may add on top of a model trained without them; --init-checkpoint starts them fresh.
_OPTIONAL_HEADS = ("blend.",)


def _fresh_heads(net: nn.Module, state: Mapping[str, Any]) -> dict[str, torch.Tensor]:
    """``net``'s own (seeded, initial) tensors for each head under :data:`_OPTIONAL_HEADS` that ``state`` lacks
    entirely (a partly present head is a mismatch, left to the strict loader to report)."""
    own = net.state_dict()
    fresh: dict[str, torch.Tensor] = {}
    for prefix in _OPTIONAL_HEADS:
        if not any(k.startswith(prefix) for k in state):
            fresh.update({k: v for k, v in own.items() if k.startswith(prefix)})
    return fresh


def _rescaled_kernels(net: nn.Module, state: Mapping[str, Any]) -> tuple[dict[str, Any], list[str]]:
    """``state`` with the fixed anti-alias kernels (``<module>.down.weight``) of ``net``'s config, and the names
    of the modules whose kernel changed.

    The kernels are Gaussians derived from a module's ``scale_factor``, not learned, and the networks they feed
    are fully convolutional: fine-tuning a model at another input scale (e.g. the dense motion at full
    resolution instead of half) keeps every learned weight. A module at scale 1 has no kernel, so one the
    checkpoint stores for it is dropped."""
    own = net.state_dict()
    out = dict(state)
    changed: list[str] = []
    for name, mod in net.named_modules():
        if not isinstance(getattr(mod, "scale_factor", None), (int, float)):
            continue
        key = f"{name}.down.weight" if name else "down.weight"
        ours, theirs = own.get(key), state.get(key)
        if ours is None and theirs is not None:
            del out[key]
        elif ours is not None and (theirs is None or theirs.shape != ours.shape
                                   or not torch.allclose(theirs.float(), ours.float(), atol=1e-6)):
            out[key] = ours
        else:
            continue
        changed.append(name or type(net).__name__)
    return out, changed


class Trainer:
    """One training run: :meth:`run` drives :meth:`epoch`, which drives :meth:`step`; :meth:`resume`,
    :meth:`save` and :meth:`log` read and write the run folder.

    The run's state (the step count, the non-finite streak, the last checkpoint, the epoch under way) is shared by
    resuming, stepping, saving and logging; holding it on one object lets each of those be a method small enough
    to read on its own. The constructor does every check that can reject the run (config, data, resume point,
    checkpoint contents) before :meth:`run` creates anything in the run folder.
    """

    def __init__(self, opts: TrainOptions, ctx: DistContext) -> None:
        self.opts = opts
        self.ctx = ctx
        self.say: Callable[[str], None] = opts.log if ctx.is_main else (lambda _msg: None)
        self.cfg = _prepare_config(opts)
        self.tp = self.cfg.train_params
        self.run_dir = Path(opts.out)
        root = self.cfg.dataset_params.get("root_dir")
        if isinstance(root, (str, os.PathLike)):
            refuse_run_dir_in_data(self.run_dir, root)
        self.config_update = self._plan_config_file()
        resume_path = self._resume_point()
        self._build_data()
        self._build_model()
        self._build_optimizers()
        self.start_epoch = self.resume(resume_path) if resume_path is not None else 0
        self._choose_precision()
        self._wrap_for_processes()
        self.num_epochs = int(self.tp["num_epochs"])
        self.ckpt_freq = max(1, int(self.tp.get("checkpoint_freq", 1)))
        self.global_step = self.start_epoch * len(self.loader)
        self.current_epoch = self.start_epoch
        self.bad_in_a_row = 0
        self.skipped = 0
        self.last_losses: dict[str, float] = {}
        self.last_ckpt: Path | None = None
        self.seen_indices: list[int] = []
        self.loss_log: LossLog | None = None
        self._refuse_input_overwrite(resume_path)

    # -- set-up ---------------------------------------------------------------------------------------------
    def _plan_config_file(self) -> str | None:
        """The text to write to ``config.yaml``, or ``None`` when the file already holds this configuration (a
        resumed run, even one given its own ``config.yaml`` as ``--config``, leaves it untouched).

        Raises:
            OutputError: ``--config`` is that very file (or a link to it) and the options would change it.
        """
        text = config_text(self.cfg)
        target = self.run_dir / "config.yaml"
        if not os.path.isfile(target):
            return text
        new = yaml.safe_load(text)
        try:
            if yaml.safe_load(target.read_text()) == new:
                return None
        except (OSError, ValueError, yaml.YAMLError):
            pass
        old = saved_config(self.opts.model, target)
        if old == new:
            return None
        given = config_file(self.opts.config)
        if given is not None and os.path.samefile(given, target):
            changed = config_differences(old, new)
            shown = ", ".join(changed[:3]) + (f" and {len(changed) - 3} more" if len(changed) > 3 else "")
            raise OutputError(f"--config {given} is the run's own config.yaml, which the options given would change "
                              f"({shown}); edit that file instead, or pass a copy of it as --config")
        return text

    def _planned_outputs(self) -> list[Path]:
        """The existing files this run would replace or append to in its folder: logs, the checkpoints of the
        epochs still to train, the interrupt checkpoint, the grids still to draw, the rank reports."""
        run = self.run_dir
        paths = [run / "log.jsonl", run / "log.csv", run / "checkpoints" / "interrupted.pth.tar"]
        if self.config_update is not None:
            paths.append(run / "config.yaml")
        paths += [run / "checkpoints" / f"{e:08d}-checkpoint.pth.tar" for e in range(self.start_epoch, self.num_epochs)
                  if (e + 1) % self.ckpt_freq == 0 or e + 1 == self.num_epochs]
        grids = run / "visualizations"
        if self.opts.visualize_every:
            if grids.is_dir():
                paths += [p for p in grids.iterdir()
                          if re.fullmatch(r"step_(\d{8})\.png", p.name) and int(p.name[5:13]) > self.global_step]
        else:
            paths += [grids / f"epoch_{e:04d}.png" for e in range(self.start_epoch, self.num_epochs)]
        if self.ctx.distributed:
            paths.append(run / "ranks" / f"rank{self.ctx.rank}.json")
        return [p for p in paths if os.path.exists(p)]

    def _refuse_input_overwrite(self, resume_path: Path | None) -> None:
        """Stop, before anything is written, when a file this run writes is one of its inputs (the same file, or
        reached through a link): a checkpoint resumed from that an epoch still to train or an interrupt would save
        over, ``--config``/``--init-checkpoint`` sitting under a name the run writes.

        Raises:
            OutputError: one line naming the file, the option that reads it and what to do.
        """
        inputs = [(name, path) for name, path in (("--config", config_file(self.opts.config)),
                                                  ("--resume", resume_path),
                                                  ("--init-checkpoint", self.opts.init_checkpoint))
                  if path is not None and os.path.exists(path)]
        for out in self._planned_outputs():
            for name, path in inputs:
                if os.path.samefile(out, path):
                    raise OutputError(f"{out}: training would write this file, and it is the input {name} {path}; "
                                      f"copy that file out of {self.run_dir} and pass the copy, or choose another "
                                      f"--out")

    def _resume_point(self) -> Path | None:
        """The checkpoint ``--resume`` names (``None``: a fresh run, which must not overwrite another's)."""
        opts, run_dir = self.opts, self.run_dir
        if not opts.resume:
            if self.ctx.is_main and list_checkpoints(run_dir):
                raise OutputError(f"{run_dir} already holds checkpoints; pass --resume to continue that run or "
                                  f"choose another --out folder")
            return None
        if opts.resume is True or str(opts.resume) in ("", "latest", "True"):
            found = list_checkpoints(run_dir)
            if not found:
                raise InputError(f"--resume: no checkpoints in {run_dir / 'checkpoints'}; start without --resume")
            return found[-1][1]
        path = Path(str(opts.resume))
        if not path.is_file():
            raise InputError(f"--resume: checkpoint {path} does not exist")
        return path

    def _build_data(self) -> None:
        ctx = self.ctx
        self.dataset = _dataset(self.cfg, self.opts.seed)
        self.global_bs = int(self.tp["batch_size"])
        if self.global_bs % ctx.world_size:
            raise ConfigError(f"batch_size {self.global_bs} does not split evenly over {ctx.world_size} processes; "
                              f"use a multiple of {ctx.world_size}")
        per_rank_bs = self.global_bs // ctx.world_size
        self.sampler = DistributedSampler(self.dataset, num_replicas=ctx.world_size, rank=ctx.rank, shuffle=True,
                                          seed=self.opts.seed, drop_last=True)
        if len(self.sampler) < per_rank_bs:
            raise ConfigError(f"an epoch holds only {len(self.dataset)} samples ({len(self.sampler)} per process), "
                              f"fewer than one batch of {per_rank_bs}; raise num_repeats or lower batch_size")
        self.loader = DataLoader(self.dataset, batch_size=per_rank_bs, sampler=self.sampler,
                                 num_workers=max(0, int(self.opts.workers)), drop_last=True,
                                 pin_memory=ctx.device.type == "cuda", persistent_workers=False)

    def _build_model(self) -> None:
        from fomm.train.factory import build_objective

        torch.manual_seed(_seed_for(self.opts.seed, 0xC0DE))  # identical initial weights on every rank
        self.objective = build_objective(self.opts.model, self.cfg, self.ctx.device)
        if self.opts.init_checkpoint is not None:
            self._load_init_checkpoint(self.opts.init_checkpoint)
        if self.ctx.distributed and self.ctx.device.type == "cuda":
            # The original trainers synchronised batch norm across GPUs; SyncBatchNorm is CUDA-only in torch.
            nn.SyncBatchNorm.convert_sync_batchnorm(self.objective)
        self.nets = self.objective.networks()
        self.disc = self.nets.get("discriminator")

    def _load_init_checkpoint(self, path: str | os.PathLike) -> None:
        container = load_container(path)
        for name, net in self.objective.networks().items():
            if name not in container:
                continue
            state = container[name]
            fresh = _fresh_heads(net, state)
            if fresh:
                # Fine-tuning a model into a config that adds an output head (blend_deformed): everything
                # else must still fit exactly; the head keeps its seeded initial weights.
                state = {**state, **fresh}
                self.say(f"--init-checkpoint: '{name}' has no {', '.join(sorted(fresh))}; "
                         "starting that head from fresh weights")
            state, rescaled = _rescaled_kernels(net, state)
            if rescaled:
                self.say(f"--init-checkpoint: '{name}': the config changes the input scale of "
                         f"{', '.join(repr(r) for r in rescaled)}; its anti-alias kernel follows the config")
            load_state_dict_strict(net, state, name, path)

    def _build_optimizers(self) -> None:
        self.milestones = [int(m) for m in self.tp.get("epoch_milestones", [])]
        self.optimizers: dict[str, torch.optim.Optimizer] = {}
        self.schedulers: dict[str, torch.optim.lr_scheduler.MultiStepLR] = {}
        for name, net in self.nets.items():
            if name == "discriminator" and not self.objective.adversarial:
                continue
            lr = float(self.tp.get(self.objective.lr_keys.get(name, f"lr_{name}"), 2e-4))
            self.optimizers[name] = torch.optim.Adam(net.parameters(), lr=lr, betas=(0.5, 0.999))
            self.schedulers[name] = torch.optim.lr_scheduler.MultiStepLR(self.optimizers[name], self.milestones,
                                                                         gamma=0.1)
        self.gen_opts = [opt for name, opt in self.optimizers.items() if name != "discriminator"]

    def _choose_precision(self) -> None:
        device = self.ctx.device
        self.use_amp = (device.type == "cuda") if self.opts.amp is None else bool(self.opts.amp)
        self.amp_dtype = torch.bfloat16
        if self.use_amp and device.type == "cuda" and not torch.cuda.is_bf16_supported():
            self.amp_dtype = torch.float16
        # Only fp16 needs loss scaling; disabled, the scaler passes losses and steps straight through.
        self.scaler = torch.amp.GradScaler(device.type, enabled=self.use_amp and self.amp_dtype == torch.float16)

    def _wrap_for_processes(self) -> None:
        from torch.nn.parallel import DistributedDataParallel as DDP

        from fomm.train.objectives import DiscriminatorStep

        disc_step = DiscriminatorStep(self.objective) if self.objective.adversarial else None
        self.gen_model: nn.Module = self.objective
        self.disc_model: nn.Module | None = disc_step
        if self.ctx.distributed:
            ids = [self.ctx.device.index] if self.ctx.device.type == "cuda" else None
            self.gen_model = DDP(self.objective, device_ids=ids)
            if disc_step is not None:
                self.disc_model = DDP(disc_step, device_ids=ids)

    # -- resume -----------------------------------------------------------------------------------------------
    def resume(self, path: Path) -> int:
        """Load weights, optimizer and scheduler states and the RNG from the checkpoint at ``path``; returns the
        epoch to continue at."""
        container = load_container(path, map_location="cpu")
        for name, net in self.nets.items():
            if name not in container:
                raise CheckpointError(f"{path}: no '{name}' entry; is it a checkpoint of this model?")
            load_state_dict_strict(net, container[name], name, path)
        for name, opt in self.optimizers.items():
            key = f"optimizer_{name}"
            if key in container:
                opt.load_state_dict(container[key])
        self._resume_schedulers(container)
        rng = (container.get("fomm_train") or {}).get("rng") or {}
        if "torch" in rng:
            torch.set_rng_state(rng["torch"])
        if "cuda" in rng and torch.cuda.is_available() and self.ctx.device.type == "cuda":
            torch.cuda.set_rng_state(rng["cuda"], self.ctx.device)
        start_epoch = int(container.get("epoch", -1)) + 1
        self.say(f"resuming from {path} at epoch {start_epoch}")
        return start_epoch

    def _resume_schedulers(self, container: Mapping[str, Any]) -> None:
        replaced = None
        for name, sched in self.schedulers.items():
            key = f"scheduler_{name}"
            if key in container:
                sched.load_state_dict(container[key])
                old = _apply_config_milestones(sched, self.milestones)
                replaced = old if old is not None else replaced
            else:  # an authors' checkpoint: rebuild the schedule from the epoch
                for _ in range(int(container.get("epoch", -1)) + 1):
                    sched.step()
        if replaced is not None:  # every network's scheduler had the same ones: say it once
            self.say(f"epoch_milestones {sorted(self.milestones)} from the config replace the checkpoint's "
                     f"{replaced}")

    # -- the loop ---------------------------------------------------------------------------------------------
    def run(self) -> TrainResult:
        """Train from :attr:`start_epoch` to ``num_epochs``; Ctrl-C saves the weights before giving up."""
        self._open_run_dir()
        existing = list_checkpoints(self.run_dir)
        self.last_ckpt = existing[-1][1] if existing else None
        ctx = self.ctx
        amp = f", amp {str(self.amp_dtype).replace('torch.', '')}" if self.use_amp else ""
        self.say(f"training {self.opts.model} on {self.dataset.dataset.folder} ({len(self.dataset.dataset)} videos x "
                 f"{self.dataset.num_repeats} repeats, {ctx.world_size} process(es), batch {self.global_bs}, device "
                 f"{ctx.device}{amp}) for epochs {self.start_epoch}..{self.num_epochs - 1}")
        try:
            for epoch in range(self.start_epoch, self.num_epochs):
                self.epoch(epoch)
        except KeyboardInterrupt:
            if ctx.is_main:
                epoch = self.current_epoch
                path = self.save(self.run_dir / "checkpoints" / "interrupted.pth.tar", epoch - 1, partial=epoch)
                self.say(f"interrupted in epoch {epoch}: weights saved to {path}; resume exactly from "
                         f"{self.last_ckpt}")
            raise
        finally:
            self._close()
        if ctx.distributed:
            dist.barrier()
        completed = self.num_epochs if self.num_epochs > self.start_epoch else self.start_epoch
        return TrainResult(run_dir=self.run_dir, last_checkpoint=self.last_ckpt, epochs_completed=completed,
                           steps=self.global_step, last_losses=self.last_losses, skipped_steps=self.skipped)

    def _open_run_dir(self) -> None:
        if not self.ctx.is_main:
            return
        # Created only now, once the config, data, model and resume point have all been accepted: a run that fails
        # on bad input leaves no empty run folder behind.
        try:
            for sub in ("checkpoints", "visualizations"):
                (self.run_dir / sub).mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise OutputError(f"cannot create run folder {self.run_dir}: {exc.strerror or exc}") from None
        if self.config_update is not None:  # unchanged (a resumed run): left as it is, never rewritten
            write_text_atomic(self.run_dir / "config.yaml", self.config_update)
        self.loss_log = LossLog(self.run_dir)

    def _close(self) -> None:
        if self.loss_log is not None:
            self.loss_log.close()
        if self.ctx.distributed:  # what the DDP test compares across processes
            ctx = self.ctx
            (self.run_dir / "ranks").mkdir(parents=True, exist_ok=True)
            info = {"rank": ctx.rank, "world_size": ctx.world_size, "last_epoch_indices": self.seen_indices,
                    "digests": {n: _param_digest(net) for n, net in self.nets.items()}}
            write_text_atomic(self.run_dir / "ranks" / f"rank{ctx.rank}.json", json.dumps(info))

    def epoch(self, epoch: int) -> None:
        """Train one epoch, then step the schedulers, write the epoch's grid and checkpoint."""
        self.current_epoch = epoch
        self.dataset.set_epoch(epoch)
        self.sampler.set_epoch(epoch)
        tgen = torch.Generator().manual_seed(_seed_for(self.opts.seed, epoch, self.ctx.rank, 0x7F))
        self.seen_indices = list(iter(self.sampler))
        self.objective.train()
        total_steps = len(self.loader)
        if self.opts.max_steps_per_epoch is not None:
            total_steps = min(total_steps, self.opts.max_steps_per_epoch)
        bar = None
        if self.opts.progress and self.ctx.is_main:
            from tqdm import tqdm

            bar = tqdm(total=total_steps, desc=f"epoch {epoch + 1}/{self.num_epochs}", unit="it", leave=False)
        last_batch = last_generated = None
        t0 = time.time()
        for it, batch in enumerate(self.loader):
            if it >= total_steps:
                break
            batch = {k: (v.to(self.ctx.device, non_blocking=True) if torch.is_tensor(v) else v)
                     for k, v in batch.items()}
            done = self.step(epoch, it, batch, tgen)
            if done is None:
                continue
            losses, generated = done
            self.log(epoch, it, losses, t0)
            if bar is not None:
                bar.set_postfix(loss=f"{sum(losses.values()):.4f}")
                bar.update(1)
            last_batch, last_generated = batch, generated
            every = self.opts.visualize_every
            if self.ctx.is_main and every and self.global_step % every == 0:
                self.visualize(f"step_{self.global_step:08d}.png", batch, generated)
        if bar is not None:
            bar.close()
        self._end_epoch(epoch, last_batch, last_generated, t0)

    def _end_epoch(self, epoch: int, last_batch: Mapping[str, Any] | None, last_generated: Mapping[str, Any] | None,
                   t0: float) -> None:
        if self.ctx.distributed:
            _average_buffers(self.nets.values(), self.ctx.world_size)
        for sched in self.schedulers.values():
            sched.step()
        if self.loss_log is not None:
            self.loss_log.flush()
        if self.ctx.is_main and last_batch is not None and not self.opts.visualize_every:
            self.visualize(f"epoch_{epoch:04d}.png", last_batch, last_generated or {})
        if self.ctx.is_main and ((epoch + 1) % self.ckpt_freq == 0 or epoch + 1 == self.num_epochs):
            self.last_ckpt = self.save(self.run_dir / "checkpoints" / f"{epoch:08d}-checkpoint.pth.tar", epoch)
        if self.last_losses:
            self.say(f"epoch {epoch}: " + ", ".join(f"{k} {v:.4f}" for k, v in self.last_losses.items())
                     + f" ({time.time() - t0:.0f} s)")

    def step(self, epoch: int, it: int, batch: Mapping[str, Any], tgen: torch.Generator
             ) -> tuple[dict[str, float], dict[str, Any]] | None:
        """One iteration: the generator update, then the discriminator's. Returns the losses (averaged over the
        processes) and the generator's outputs, or ``None`` when a non-finite loss skipped the update."""
        if self.disc is not None:
            self.disc.requires_grad_(False)  # the generator step must not touch discriminator weights
        with torch.autocast(self.ctx.device.type, dtype=self.amp_dtype, enabled=self.use_amp):
            losses, generated = self.gen_model(batch, generator=tgen)
        loss = sum(losses.values())
        assert isinstance(loss, torch.Tensor)
        if not self._all_finite(loss):
            self._skip_step(epoch, it)
            return None
        self.bad_in_a_row = 0
        self.scaler.scale(loss).backward()
        for opt in self.gen_opts:
            self.scaler.step(opt)
            opt.zero_grad(set_to_none=True)
        record = {k: float(v.detach()) for k, v in losses.items()}
        if self.disc_model is not None and self.disc is not None:
            record.update(self._discriminator_step(batch, generated))
        self.scaler.update()
        self.global_step += 1
        if self.ctx.distributed:
            vals = torch.tensor(list(record.values()), device=self.ctx.device, dtype=torch.float64)
            dist.all_reduce(vals)
            record = dict(zip(record, (vals / self.ctx.world_size).tolist(), strict=True))
        self.last_losses = record
        return record, generated

    def _all_finite(self, loss: torch.Tensor) -> bool:
        finite = bool(torch.isfinite(loss.detach()).item())
        if self.ctx.distributed:  # all ranks must agree to skip, or DDP would hang on the next all-reduce
            flag = torch.tensor([0.0 if finite else 1.0], device=self.ctx.device)
            dist.all_reduce(flag)
            finite = flag.item() == 0
        return finite

    def _skip_step(self, epoch: int, it: int) -> None:
        for opt in self.gen_opts:
            opt.zero_grad(set_to_none=True)
        self.bad_in_a_row += 1
        self.skipped += 1
        # stacklevel 1: the cause is the run (data, learning rates), not a line of the caller's to point at.
        warnings.warn(f"epoch {epoch}, iteration {it}: non-finite loss, step skipped", stacklevel=1)
        if self.bad_in_a_row >= MAX_BAD_STEPS:
            raise TrainingError(f"{MAX_BAD_STEPS} non-finite losses in a row; lower the learning "
                                f"rates or check the data. Last good checkpoint: {self.last_ckpt}")

    def _discriminator_step(self, batch: Mapping[str, Any], generated: Mapping[str, Any]) -> dict[str, float]:
        assert self.disc is not None and self.disc_model is not None
        opt = self.optimizers["discriminator"]
        self.disc.requires_grad_(True)
        opt.zero_grad(set_to_none=True)
        with torch.autocast(self.ctx.device.type, dtype=self.amp_dtype, enabled=self.use_amp):
            d_losses = self.disc_model(batch, generated)
        d_loss = sum(d_losses.values())
        assert isinstance(d_loss, torch.Tensor)
        self.scaler.scale(d_loss).backward()
        self.scaler.step(opt)
        opt.zero_grad(set_to_none=True)
        return {k: float(v.detach()) for k, v in d_losses.items()}

    # -- output -----------------------------------------------------------------------------------------------
    def log(self, epoch: int, it: int, losses: Mapping[str, float], t0: float) -> None:
        """Append the iteration's losses and learning rates to ``log.jsonl``/``log.csv`` (rank 0 only)."""
        if self.loss_log is None:
            return
        record: dict[str, Any] = {"epoch": epoch, "iteration": it, "step": self.global_step}
        record.update({k: round(v, 6) for k, v in losses.items()})
        record["total"] = round(sum(v for k, v in losses.items() if k != "disc_gan"), 6)
        record.update({f"lr_{n}": s.get_last_lr()[0] for n, s in self.schedulers.items()})
        record["time"] = round(time.time() - t0, 3)
        self.loss_log.write(record)

    def visualize(self, name: str, batch: Mapping[str, Any], generated: Mapping[str, Any]) -> None:
        """Write the objective's image grid for ``batch`` to ``visualizations/name``."""
        from fomm.train.visualize import save_grid

        save_grid(str(self.run_dir / "visualizations" / name), self.objective.visual_items(batch, generated))

    def save(self, path: Path, completed_epoch: int, partial: int | None = None) -> Path:
        """Write a checkpoint: the original container (networks by their checkpoint names) plus optimizer and
        scheduler states and what resuming needs (RNG, step, config). ``partial``: the epoch cut short."""
        rng: dict[str, Any] = {"torch": torch.get_rng_state()}
        if self.ctx.device.type == "cuda":
            rng["cuda"] = torch.cuda.get_rng_state(self.ctx.device)
        container: dict[str, Any] = {name: net.state_dict() for name, net in self.nets.items()}
        for name, opt in self.optimizers.items():
            container[f"optimizer_{name}"] = opt.state_dict()
        for name, sched in self.schedulers.items():
            container[f"scheduler_{name}"] = sched.state_dict()
        container["epoch"] = int(completed_epoch)
        container["fomm_train"] = {"model": self.opts.model, "config": self.cfg.to_dict(), "seed": int(self.opts.seed),
                                   "world_size": self.ctx.world_size, "step": int(self.global_step), "rng": rng,
                                   "partial_epoch": partial}
        return atomic_save(container, path)


__all__ = ["DistContext", "TrainOptions", "TrainResult", "Trainer", "TrainingError", "average_checkpoints",
           "init_distributed", "list_checkpoints", "strip_checkpoint", "train"]
