"""Hostile inputs, part "never destroy a user's data" (issue #23).

Every subcommand that reads files and writes outputs refuses, with one line and before any work, an output that is
(or reaches through a link) one of its inputs, or an output folder it would replace that holds one; paths built from
file contents (metadata ids, ONNX sidecar file names, split entries) stay inside the output folder; SIGTERM and
SIGHUP clean up as Ctrl-C does. Refusals run in-process (:func:`hostile.assert_refused`); signals need a real
process.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import av
import numpy as np
import pytest
import yaml
from helpers import make_strips, tiny_config
from hostile import REPO, assert_refused, leftovers, run_main, snapshot

from fomm.errors import InputError, OutputError
from fomm.io.atomic import refuse_input_overwrite
from fomm.io.safepath import check_component, component_problem

WEIGHTS = REPO / "fomm" / "weights" / "fomm-actions-64.pth.tar"
EXAMPLES = REPO / "fomm" / "assets" / "examples"
VOX = "video_id,start,end,bbox,fps,width,height,partition,person_id\n"
TAICHI = "video_id,start,end,bbox,fps,width,height,partition\n"


def make_video(path: Path, frames: int = 12, size: int = 64) -> Path:
    """A small MPEG-4 clip of a bar sliding over black (PyAV's native encoder: no libx264 needed)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with av.open(str(path), "w") as container:
        stream = container.add_stream("mpeg4", rate=25)
        stream.width = stream.height = size
        stream.pix_fmt = "yuv420p"
        for i in range(frames):
            frame = np.zeros((size, size, 3), np.uint8)
            frame[:, i % size:i % size + 8] = 200
            for packet in stream.encode(av.VideoFrame.from_ndarray(frame, format="rgb24")):
                container.mux(packet)
        for packet in stream.encode():
            container.mux(packet)
    return path


@pytest.fixture()
def pair(tmp_path):
    """A source photo, a driving clip and a checkpoint, copied so that a test may not touch the shipped files."""
    src = shutil.copy(EXAMPLES / "source.png", tmp_path / "s.png")
    drv = make_video(tmp_path / "d.mp4")
    ck = shutil.copy(WEIGHTS, tmp_path / "ck.pth.tar")
    return Path(src), drv, Path(ck)


def _animate(src, drv, out, *extra):
    return ["animate", "--source", src, "--driving", drv, "--checkpoint", WEIGHTS, "--config", "actions-64",
            "-q", "-o", out, *extra]


# ------------------------------------------------------------------------------------------------------ animate


def test_animate_output_is_the_driving_video(pair):
    src, drv, _ = pair
    assert_refused(_animate(src, drv, drv), inputs=[src, drv], match="is the input")


def test_animate_output_reaches_the_input_through_links(pair, tmp_path):
    src, drv, _ = pair
    (tmp_path / "sym.mp4").symlink_to(drv)
    assert_refused(_animate(src, drv, tmp_path / "sym.mp4"), inputs=[src, drv, tmp_path / "sym.mp4"],
                   match="is the input")
    os.link(drv, tmp_path / "hard.mp4")
    assert_refused(_animate(src, drv, tmp_path / "hard.mp4"), inputs=[src, drv], match="is the input")
    (tmp_path / "dirlink").symlink_to(tmp_path, target_is_directory=True)
    assert_refused(_animate(src, drv, tmp_path / "dirlink" / "d.mp4"), inputs=[src, drv], match="is the input")
    # The input given through a link, the output by its real name.
    assert_refused(_animate(src, tmp_path / "sym.mp4", drv), inputs=[src, drv], match="is the input")


def test_animate_frame_folder_output_is_the_driving_frame_folder(tmp_path):
    frames = tmp_path / "frames"
    frames.mkdir()
    for i in range(3):
        shutil.copy(EXAMPLES / "source.png", frames / f"{i:06d}.png")  # what a frame folder output looks like
    assert_refused(_animate(EXAMPLES / "source.png", frames, str(frames) + "/"), inputs=[frames],
                   match="is the input")


def test_animate_output_is_the_checkpoint_or_config(pair, tmp_path):
    src, drv, _ = pair
    ck = shutil.copy(WEIGHTS, tmp_path / "weights.mp4")  # a checkpoint by any name is still the checkpoint
    argv = ["animate", "--source", src, "--driving", drv, "--checkpoint", ck, "--config", "actions-64", "-o", ck]
    assert_refused(argv, inputs=[ck, src, drv], match="is the input")
    cfg = shutil.copy(REPO / "fomm" / "configs" / "actions-64.yaml", tmp_path / "cfg.mov")
    argv = ["animate", "--source", src, "--driving", drv, "--checkpoint", WEIGHTS, "--config", cfg, "-o", cfg]
    assert_refused(argv, inputs=[cfg], match="is the input")


def test_animate_example_pair_is_protected(tmp_path):
    # --example resolves the pair only after the model is loaded; the shipped clip is still an input.
    link = tmp_path / "out.mp4"
    link.symlink_to(EXAMPLES / "body-driving.mp4")
    assert_refused(["animate", "--example", "--pretrained", "actions-64", "-q", "-o", link],
                   inputs=[EXAMPLES / "body-driving.mp4", link], match="is the input")


def test_animate_frame_folder_output_would_replace_the_onnx_export(pair, tmp_path):
    src, drv, _ = pair
    export = tmp_path / "export"
    export.mkdir()
    (export / "fomm_onnx.json").write_text("{}")
    argv = ["animate", "--source", src, "--driving", drv, "--backend", "onnx", "--onnx-dir", export,
            "-o", str(export) + "/"]
    assert_refused(argv, inputs=[export, src, drv])


def test_animate_dangling_link_and_sibling_outputs_are_allowed(pair, tmp_path):
    # Not an input, so not refused: the check must not get in the way of ordinary outputs.
    src, drv, _ = pair
    dangling = tmp_path / "dangling.mp4"
    dangling.symlink_to(tmp_path / "nowhere.mp4")
    refuse_input_overwrite([dangling, tmp_path / "new.mp4", drv.with_name("d2.mp4")], [src, drv])


# --------------------------------------------------------------------------------------------------------- crop


def test_crop_output_is_the_input(tmp_path):
    video = make_video(tmp_path / "v.mp4")
    assert_refused(["crop", "--video", video, "-o", video, "-q"], inputs=[video], match="is the input")
    link = tmp_path / "link.mp4"
    link.symlink_to(video)
    assert_refused(["crop", "--video", video, "-o", link, "-q"], inputs=[video, link], match="is the input")


def test_crop_segment_name_would_be_the_input(tmp_path):
    # With several face segments, -o clip.mp4 writes clip_00.mp4, clip_01.mp4, ...: refused up front, not after
    # the face tracking found out how many segments there are.
    video = make_video(tmp_path / "clip_01.mp4")
    assert_refused(["crop", "--video", video, "-o", tmp_path / "clip.mp4", "-q"],
                   inputs=[video], outputs=[tmp_path / "clip.mp4"], match="is the input")


# ------------------------------------------------------------------------------------------ average-checkpoints


def test_average_checkpoints_output_is_an_input(pair, tmp_path):
    _, _, ck = pair
    other = shutil.copy(WEIGHTS, tmp_path / "other.pth.tar")
    assert_refused(["average-checkpoints", ck, "-o", ck], inputs=[ck], match="is the input")
    assert_refused(["average-checkpoints", ck, other, "-o", other], inputs=[ck, other], match="is the input")
    link = tmp_path / "avg.pth.tar"
    link.symlink_to(ck)
    assert_refused(["average-checkpoints", ck, "-o", link], inputs=[ck, link], match="is the input")


# ------------------------------------------------------------------------------------------------ actions-split


def _actions(root: Path) -> Path:
    """Every clip the shipped split lists, as a few bytes each (the refusal must come before any is touched)."""
    from fomm.datasets.splits import load_split

    split = load_split()
    for rel in split["train"] + split["test"]:
        (root / rel).parent.mkdir(parents=True, exist_ok=True)
        (root / rel).write_bytes(rel.encode())
    return root


@pytest.mark.parametrize("copy", [[], ["--copy"]])
def test_actions_split_output_is_the_data(tmp_path, copy):
    act = _actions(tmp_path / "act")
    assert_refused(["actions-split", "--data", act, "-o", act, "--overwrite", *copy], inputs=[act],
                   match="is the input")


@pytest.mark.parametrize("copy", [[], ["--copy"]])
def test_actions_split_output_holds_the_data(tmp_path, copy):
    act = _actions(tmp_path / "top" / "actions")
    (tmp_path / "top" / "notes.txt").write_text("mine")
    assert_refused(["actions-split", "--data", act, "-o", tmp_path / "top", "--overwrite", *copy],
                   inputs=[tmp_path / "top"], match="holds the input")


def test_actions_split_output_inside_the_data_or_linked_to_it(tmp_path):
    act = _actions(tmp_path / "act")
    assert_refused(["actions-split", "--data", act, "-o", act / "train" / "split"], inputs=[act],
                   outputs=[act / "train" / "split"], match="inside the input folder")
    link = tmp_path / "link"
    link.symlink_to(act, target_is_directory=True)
    assert_refused(["actions-split", "--data", act, "-o", link, "--overwrite"], inputs=[act, link],
                   match="is the input")


def test_split_entries_stay_below_the_data_folder(tmp_path):
    from fomm.datasets.splits import materialise_split

    act = _actions(tmp_path / "act")
    (tmp_path / "secret.jpg").write_bytes(b"not a clip")
    for bad in ("../secret.jpg", str(tmp_path / "secret.jpg"), "train/../../secret.jpg", "train/.hidden"):
        with pytest.raises(InputError, match="not a relative path below the data folder"):
            materialise_split({"train": ["train/00000000.jpg", bad], "test": []}, act, tmp_path / "out",
                              mode="copy")
        assert not (tmp_path / "out").exists()
    bad_json = tmp_path / "split.json"
    bad_json.write_text('{"train": [["x"]], "test": []}')
    from fomm.datasets.splits import load_split

    with pytest.raises(InputError, match="must list paths"):
        load_split(bad_json)
    bad_json.write_text("{not json")
    with pytest.raises(InputError, match="not readable JSON"):
        load_split(bad_json)


# ------------------------------------------------------------------------------------------------------ prepare


def _prepare_inputs(tmp_path: Path, row: str, header: str = VOX) -> tuple[Path, Path]:
    meta = tmp_path / "meta.csv"
    meta.write_text(header + row)
    videos = tmp_path / "raw"
    make_video(videos / "vid.mp4")
    return meta, videos


@pytest.mark.parametrize("person", ["../../../X", "../X", "..", "/ABS/X", "a/b", ".hidden", "a\\b"])
def test_prepare_person_id_cannot_leave_the_output_folder(tmp_path, person):
    person = person.replace("/ABS", str(tmp_path))
    meta, videos = _prepare_inputs(tmp_path, f"vid,0,10,0-0-32-32,25,64,64,train,{person}\n")
    out = tmp_path / "ds" / "out"
    before = sorted(p.name for p in tmp_path.iterdir())
    assert_refused(["prepare", "vox", "--metadata", meta, "--videos", videos, "-o", out, "-q"],
                   inputs=[meta, videos], outputs=[tmp_path / "ds"], match="line 2: person_id")
    assert sorted(p.name for p in tmp_path.iterdir()) == before  # nothing written beside the inputs either


@pytest.mark.parametrize("video_id", ["..", "../vid", "/abs", ".vid"])
@pytest.mark.parametrize("kind", ["vox", "taichi"])
def test_prepare_video_id_cannot_leave_the_output_folder(tmp_path, video_id, kind):
    row = f"{video_id},0,10,0-0-32-32,25,64,64,train" + (",id1\n" if kind == "vox" else "\n")
    meta, videos = _prepare_inputs(tmp_path, row, VOX if kind == "vox" else TAICHI)
    assert_refused(["prepare", kind, "--metadata", meta, "--videos", videos, "-o", tmp_path / "out", "-q"],
                   inputs=[meta, videos], outputs=[tmp_path / "out"], match="line 2: video_id")


def test_prepare_id_with_a_newline_and_short_rows(tmp_path):
    meta, videos = _prepare_inputs(tmp_path, 'vid,0,10,0-0-32-32,25,64,64,train,"id1\nrm -rf"\n')
    assert_refused(["prepare", "vox", "--metadata", meta, "--videos", videos, "-o", tmp_path / "out", "-q"],
                   inputs=[meta, videos], outputs=[tmp_path / "out"], match="control character")
    for short in ("vid,0\n", "vid,0,10\n", "vid,0,10,0-0-32-32,25,64,64\n"):
        meta.write_text(VOX + short)  # missing cells are None to the CSV reader: no AttributeError traceback
        assert_refused(["prepare", "vox", "--metadata", meta, "--videos", videos, "-o", tmp_path / "out", "-q"],
                       inputs=[meta, videos], outputs=[tmp_path / "out"], match="line 2")


def test_prepare_output_is_an_input(tmp_path):
    meta, videos = _prepare_inputs(tmp_path, "vid,0,10,0-0-32-32,25,64,64,train,id1\n")
    for out in (meta, videos / "vid.mp4"):
        assert_refused(["prepare", "vox", "--metadata", meta, "--videos", videos, "-o", out, "-q"],
                       inputs=[meta, videos], match="is the input")


def test_prepare_into_the_videos_folder_keeps_the_videos(tmp_path):
    # An output folder may hold inputs: preparing into the raw folder itself adds train/ and test/ beside them.
    meta, videos = _prepare_inputs(tmp_path, "vid,0,10,0-0-32-32,25,64,64,train,id1\n")
    raw = snapshot([videos / "vid.mp4", meta])
    res = run_main(["prepare", "vox", "--metadata", meta, "--videos", videos, "-o", videos, "--size", "32", "-q"])
    assert res.rc == 0, res.stderr
    assert snapshot([videos / "vid.mp4", meta]) == raw
    assert (videos / "train" / "id1#vid#000000#000010.mp4").is_file()
    assert leftovers(videos) == []


def test_chunk_output_refuses_hand_made_chunks(tmp_path):
    from fomm.datasets.metadata import Chunk
    from fomm.datasets.prepare import chunk_output

    for chunk in (Chunk("v", 0, 5, (0, 0, 4, 4), 25.0, 8, 8, "train", "../../x"),
                  Chunk("v", 0, 5, (0, 0, 4, 4), 25.0, 8, 8, "../train")):
        with pytest.raises(InputError):
            chunk_output(tmp_path, chunk, "mp4")


# -------------------------------------------------------------------------------------------------- export-onnx


def test_export_onnx_output_is_the_checkpoint(pair):
    _, _, ck = pair
    assert_refused(["export-onnx", "--checkpoint", ck, "--config", "actions-64", "-o", ck], inputs=[ck],
                   match="is the input")


def test_export_onnx_would_replace_an_input_in_its_folder(tmp_path):
    export = tmp_path / "export"
    export.mkdir()
    ck = shutil.copy(WEIGHTS, export / "frame_stage.onnx")  # an input under a name the export writes
    assert_refused(["export-onnx", "--checkpoint", ck, "--config", "actions-64", "-o", export], inputs=[export],
                   match="is the input")


def _fake_export(folder: Path, graphs: dict) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    meta = {"format": "fomm-onnx", "format_version": 2, "image_size": [64, 64], "has_jacobian": True,
            "num_channels": 3, "graphs": graphs}
    (folder / "fomm_onnx.json").write_text(json.dumps(meta))
    return folder


def _graphs(**files):
    return {name: {"file": files.get(name, f"{name}.onnx"), "inputs": ["x"], "outputs": ["y"]}
            for name in ("kp_detector", "source_stage", "frame_stage")}


@pytest.mark.parametrize("file", ["../outside.onnx", "/ABS/outside.onnx", "..", "sub/../../outside.onnx", ""])
def test_onnx_sidecar_graph_file_cannot_leave_the_export(pair, tmp_path, file):
    pytest.importorskip("onnxruntime")
    src, drv, _ = pair
    (tmp_path / "outside.onnx").write_bytes(b"not loaded")
    export = _fake_export(tmp_path / "export", _graphs(kp_detector=file.replace("/ABS", str(tmp_path))))
    argv = ["animate", "--source", src, "--driving", drv, "--backend", "onnx", "--onnx-dir", export, "-q",
            "-o", tmp_path / "out.mp4"]
    assert_refused(argv, inputs=[export, src, drv, tmp_path / "outside.onnx"], outputs=[tmp_path / "out.mp4"],
                   match="graphs.kp_detector.file")


@pytest.mark.parametrize("graphs", [{}, {"kp_detector": {"inputs": [], "outputs": []}}, [], "x",
                                    {**_graphs(), "frame_stage": "frame_stage.onnx"}])
def test_onnx_sidecar_with_a_broken_graph_table(pair, tmp_path, graphs):
    pytest.importorskip("onnxruntime")
    src, drv, _ = pair
    export = _fake_export(tmp_path / "export", graphs)
    argv = ["animate", "--source", src, "--driving", drv, "--backend", "onnx", "--onnx-dir", export, "-q",
            "-o", tmp_path / "out.mp4"]
    assert_refused(argv, inputs=[export], outputs=[tmp_path / "out.mp4"], match="graphs")


# --------------------------------------------------------------------------------------------------------- eval


def _dataset(root: Path) -> Path:
    make_video(root / "test" / "a.mp4", frames=4)
    return root


def test_eval_run_folder_is_or_lies_inside_the_dataset(tmp_path):
    ds = _dataset(tmp_path / "ds")
    assert_refused(["eval", "reconstruction", ds, "--out", ds], inputs=[ds], match="is the input")
    assert_refused(["eval", "--data", ds, "--out", ds / "test"], inputs=[ds], match="inside the input folder")
    assert_refused(["eval", "--data", ds / "test", "--out", ds / "test" / "run"], inputs=[ds],
                   outputs=[ds / "test" / "run"], match="inside the input folder")


def test_eval_dataset_inside_the_run_folders_generated_frames(tmp_path):
    run = tmp_path / "run"
    ds = _dataset(run / "generated" / "ds")
    assert_refused(["eval", "--data", ds, "--out", run], inputs=[run], match="holds the input")


def test_eval_outputs_are_not_the_checkpoint(tmp_path):
    ds = _dataset(tmp_path / "ds")
    run = tmp_path / "run"
    run.mkdir()
    ck = shutil.copy(WEIGHTS, run / "metrics.json")
    assert_refused(["eval", "--data", ds, "--out", run, "--model", "fomm", "--config", "actions-64",
                    "--checkpoint", ck], inputs=[ck, ds], match="is the input")


def test_eval_compare_output_is_a_runs_file(tmp_path):
    run = tmp_path / "run"
    run.mkdir()
    (run / "metrics.json").write_text("{}")
    assert_refused(["eval", "compare", run, "--out", run / "metrics.json"], inputs=[run], match="is the input")
    assert_refused(["eval", "compare", run, "--out", run], inputs=[run], match="is the input")


def _nan_for_four_frame_videos(source, driving):
    """A reconstructor whose output is NaN for the 4-frame video and right for the others."""
    frames = list(driving)
    for f in frames:
        yield np.full_like(f, np.nan) if len(frames) == 4 else f


def test_eval_non_finite_reconstruction_names_the_video(tmp_path, monkeypatch):
    """NaN frames were turned into black ones and scored as if the model had made them; now that video fails with
    the reason, which the one error line names (and --allow-failures keeps the others' numbers)."""
    import fomm.cli.eval as cli_eval

    ds = _dataset(tmp_path / "ds")
    make_video(ds / "test" / "b.mp4", frames=6)
    monkeypatch.setattr(cli_eval, "_make_reconstructor", lambda args: _nan_for_four_frame_videos)
    run = tmp_path / "run"
    argv = ["eval", "reconstruction", ds, "--out", run, "--model", "fomm", "-q"]
    before = snapshot([ds])
    res = run_main(argv)
    lines = res.stderr.strip().splitlines()
    assert res.rc == 2 and len(lines) == 1 and "Traceback" not in res.stderr, res.stderr
    assert lines[0].startswith("fomm: error: 1 of 2 videos could not be scored (first: a: the model produced "
                               "non-finite values (NaN or inf) at frame 0"), lines[0]
    assert not (run / "generated" / "a").exists() and (run / "generated" / "b").is_dir()
    assert snapshot([ds]) == before
    res = run_main([*argv, "--allow-failures"])
    assert res.rc == 0, res.stderr
    summary = json.loads((run / "metrics.json").read_text())
    assert summary["videos"]["scored"] == 1 and summary["videos"]["failed"][0]["video"] == "a"
    assert "non-finite" in summary["videos"]["failed"][0]["error"]
    (ds / "test" / "b.mp4").unlink()
    before = snapshot([ds])
    res = run_main([*argv, "--allow-failures"])  # nothing scored: an error even so
    assert res.rc == 2 and "no video could be scored" in res.stderr and "first: a: " in res.stderr, res.stderr
    assert snapshot([ds]) == before and leftovers(run) == []


def test_eval_model_overflow_is_not_hidden_by_the_clamp(tmp_path, monkeypatch):
    """A real model's reconstructor: +inf would be clamped to white and scored; it fails the video instead."""
    from fomm.animate.base import StreamingAnimator

    ds = _dataset(tmp_path / "ds")
    original = StreamingAnimator.animate_batch

    def overflow(self, frames):
        pred = original(self, frames).clone()
        pred[-1] = float("inf")
        return pred

    monkeypatch.setattr(StreamingAnimator, "animate_batch", overflow)
    res = run_main(["eval", "--data", ds, "--out", tmp_path / "run", "--model", "fomm", "--config", "actions-64",
                    "--checkpoint", WEIGHTS, "--batch-size", "2", "-q"])
    assert res.rc == 2 and "Traceback" not in res.stderr, res.stderr
    assert "first: a: the model produced non-finite values (NaN or inf) at frame 1;" in res.stderr, res.stderr


# -------------------------------------------------------------------------------------------------------- train


def test_train_run_folder_is_or_lies_inside_the_data(tmp_path):
    data = tmp_path / "data"
    (data / "train").mkdir(parents=True)
    (data / "train" / "0000.png").write_bytes(b"strip")
    base = ["train", "--config", "actions-64", "--data", data, "-q"]
    assert_refused([*base, "--out", data], inputs=[data], match="is the input")
    assert_refused([*base, "--out", data / "train" / "run"], inputs=[data], outputs=[data / "train" / "run"],
                   match="inside the input folder")


def test_train_would_rewrite_its_config_or_init_checkpoint(tmp_path):
    run = tmp_path / "run"
    (run / "checkpoints").mkdir(parents=True)
    cfg = shutil.copy(REPO / "fomm" / "configs" / "actions-64.yaml", run / "config.yaml")
    # Its own config.yaml is a fine --config; an option that would change it is refused (it is an input).
    assert_refused(["train", "--config", cfg, "--out", run, "--epochs", "7", "-q"], inputs=[run],
                   match="is the run's own config.yaml")
    ck = shutil.copy(WEIGHTS, run / "checkpoints" / "interrupted.pth.tar")
    assert_refused(["train", "--config", "actions-64", "--init-checkpoint", ck, "--out", run, "-q"],
                   inputs=[ck], match="is the input")


@pytest.fixture()
def interrupted_run(tmp_path, monkeypatch):
    """A tiny 2-epoch run stopped by Ctrl-C at the start of epoch 1 (checkpoint 0, config.yaml, logs, the interrupt
    checkpoint), as a user would resume it: ``(config, data, run)``."""
    import fomm.train.trainer as trainer

    cfg, data, run = tiny_config(tmp_path), make_strips(tmp_path / "data"), tmp_path / "run"
    step = trainer.Trainer.step

    def ctrl_c_in_epoch_1(self, epoch, it, batch, tgen):
        if epoch == 1:
            raise KeyboardInterrupt
        return step(self, epoch, it, batch, tgen)

    with monkeypatch.context() as patch:
        patch.setattr(trainer.Trainer, "step", ctrl_c_in_epoch_1)
        res = run_main(["train", "--config", cfg, "--data", data, "--out", run, "--workers", "0", "-q"])
    assert res.rc == 130, res.stderr
    assert (run / "checkpoints" / "interrupted.pth.tar").is_file()
    return cfg, data, run


def test_train_resumes_from_its_own_config_yaml(tmp_path, interrupted_run):
    """`fomm train --config run/config.yaml --out run --resume`: the natural way to resume. The run continues
    (same epochs and steps, same weights as an uninterrupted run) and config.yaml is not even rewritten."""
    from fomm.checkpoint import load_container
    from fomm.train.trainer import list_checkpoints

    cfg, data, run = interrupted_run
    own = run / "config.yaml"
    inputs = [cfg, data, own, run / "checkpoints" / "00000000-checkpoint.pth.tar"]
    before, stat = snapshot(inputs), own.stat()
    # --data spelled differently (trailing slash) names the same folder: still the same configuration.
    res = run_main(["train", "--config", own, "--data", f"{data}/", "--out", run, "--resume", "--workers", "0", "-q"])
    assert res.rc == 0, res.stderr
    assert "done: 2 epoch(s), 12 steps" in res.stdout
    assert snapshot(inputs) == before
    assert (own.stat().st_ino, own.stat().st_mtime_ns) == (stat.st_ino, stat.st_mtime_ns)  # not rewritten at all
    assert [e for e, _ in list_checkpoints(run)] == [0, 1]
    rows = [json.loads(line) for line in (run / "log.jsonl").read_text().splitlines()]
    assert [(r["epoch"], r["step"]) for r in rows] == [(e, s) for s in range(1, 13) for e in [(s - 1) // 6]]
    full = run_main(["train", "--config", cfg, "--data", data, "--out", tmp_path / "full", "--workers", "0", "-q"])
    assert full.rc == 0, full.stderr
    a = load_container(run / "checkpoints" / "00000001-checkpoint.pth.tar")
    b = load_container(tmp_path / "full" / "checkpoints" / "00000001-checkpoint.pth.tar")
    assert a["fomm_train"]["step"] == 12 and a["epoch"] == 1
    for k, v in b["generator"].items():
        assert np.array_equal(v.numpy(), a["generator"][k].numpy()), k
    assert leftovers(run) == []


def test_train_refuses_to_change_its_own_config_yaml(tmp_path, interrupted_run):
    _, data, run = interrupted_run
    own = run / "config.yaml"
    link = tmp_path / "link.yaml"
    link.symlink_to(own)
    for config in (own, link):
        for extra in (["--epochs", "5"], ["--data", tmp_path / "elsewhere"], ["--batch-size", "3"]):
            assert_refused(["train", "--config", config, "--out", run, "--resume", "--workers", "0", "-q", *extra],
                           inputs=[run, data, link], match="is the run's own config.yaml")
    # The other way round: config.yaml links to the --config file, which a rewrite would replace by a copy.
    other = tmp_path / "other"
    shutil.copytree(run, other)
    mine = shutil.copy(own, tmp_path / "mine.yaml")
    (other / "config.yaml").unlink()
    (other / "config.yaml").symlink_to(mine)
    assert_refused(["train", "--config", mine, "--out", other, "--resume", "--epochs", "5", "--workers", "0", "-q"],
                   inputs=[other, mine], match="is the run's own config.yaml")


def test_train_changed_config_elsewhere_replaces_config_yaml_atomically(tmp_path, interrupted_run):
    """A --config that is not config.yaml may change the run's settings: config.yaml is then replaced whole."""
    cfg, data, run = interrupted_run
    longer = yaml.safe_load(cfg.read_text())
    longer["train_params"]["num_epochs"] = 3
    (tmp_path / "longer.yaml").write_text(yaml.safe_dump(longer))
    res = run_main(["train", "--config", tmp_path / "longer.yaml", "--data", data, "--out", run, "--resume",
                    "--workers", "0", "-q"])
    assert res.rc == 0, res.stderr
    assert yaml.safe_load((run / "config.yaml").read_text())["train_params"]["num_epochs"] == 3
    assert leftovers(run) == []


def test_train_never_writes_over_the_checkpoint_it_resumes_from(tmp_path, interrupted_run):
    _, data, run = interrupted_run
    ckpts = run / "checkpoints"
    # Ctrl-C would save the interrupt checkpoint over the very file resumed from.
    assert_refused(["train", "--config", run / "config.yaml", "--out", run, "--resume",
                    ckpts / "interrupted.pth.tar", "--workers", "0", "-q"], inputs=[run, data],
                   match="it is the input --resume")
    # Epoch 0's weights under epoch 1's name: training epoch 1 would replace the input, given or found as latest.
    shutil.copy(ckpts / "00000000-checkpoint.pth.tar", ckpts / "00000001-checkpoint.pth.tar")
    for resume in (["--resume", ckpts / "00000001-checkpoint.pth.tar"], ["--resume"]):
        assert_refused(["train", "--config", run / "config.yaml", "--out", run, *resume, "--workers", "0", "-q"],
                       inputs=[run, data], match="it is the input --resume")
    # Reached through a link from a name the run writes.
    (ckpts / "00000001-checkpoint.pth.tar").unlink()
    (ckpts / "00000001-checkpoint.pth.tar").symlink_to(tmp_path / "kept.pth.tar")
    kept = shutil.copy(ckpts / "00000000-checkpoint.pth.tar", tmp_path / "kept.pth.tar")
    assert_refused(["train", "--config", run / "config.yaml", "--out", run, "--resume", kept, "--workers", "0",
                    "-q"], inputs=[run, data, kept], match="it is the input --resume")


def _config_with_root(tmp_path: Path, root: str | Path) -> Path:
    cfg = yaml.safe_load(tiny_config(tmp_path).read_text())
    cfg["dataset_params"]["root_dir"] = str(root)
    path = tmp_path / "rooted.yaml"
    path.write_text(yaml.safe_dump(cfg))
    return path


def test_train_run_folder_inside_the_configs_dataset(tmp_path, monkeypatch):
    """The dataset named only by dataset_params.root_dir (no --data) is checked against --out too."""
    data = make_strips(tmp_path / "data")
    monkeypatch.chdir(tmp_path)  # a relative root_dir is relative to the working folder
    cfg = _config_with_root(tmp_path, "data")
    (tmp_path / "link").symlink_to(data, target_is_directory=True)
    for out in (data, data / "runs" / "a", tmp_path / "link" / "run", Path("data/train/run")):
        assert_refused(["train", "--config", cfg, "--out", out, "--workers", "0", "-q"], inputs=[data, cfg],
                       outputs=[data / "runs", tmp_path / "link" / "run"], match="the dataset folder")
    # The dataset inside a folder the run fills (a flat folder of strips in visualizations/).
    flat = make_strips(tmp_path / "run" / "visualizations" / "d") / "train"
    cfg = _config_with_root(tmp_path, flat)
    assert_refused(["train", "--config", cfg, "--out", tmp_path / "run", "--workers", "0", "-q"],
                   inputs=[tmp_path / "run", cfg], match="which training writes into")


# ------------------------------------------------------------------------------------------------ the building blocks


def test_component_rule():
    for good in ("id10001", "-WMh3ye5tBsE", "a#b", "name with spaces"):
        assert component_problem(good) is None
    for bad in ("", ".", "..", "../x", "/x", "a/b", "a\\b", ".x", "a\nb", "a\x00b", None, 3):
        assert component_problem(bad) is not None, bad
    with pytest.raises(InputError, match="line 7: person_id '../x' contains a path separator"):
        check_component("../x", "meta.csv line 7: person_id")


def test_refuse_folders_written_into(tmp_path):
    data = tmp_path / "data"
    (data / "train").mkdir(parents=True)
    ck = tmp_path / "ck.pth.tar"
    ck.write_bytes(b"w")
    refuse_input_overwrite([], [ck, data], folders=tmp_path / "run")  # elsewhere: fine
    refuse_input_overwrite([], [ck], folders=tmp_path)  # a folder holding an input: fine
    with pytest.raises(OutputError, match="is the input"):
        refuse_input_overwrite([], [ck], folders=ck)
    with pytest.raises(OutputError, match="is the input"):
        refuse_input_overwrite([], [data], folders=data)
    with pytest.raises(OutputError, match="inside the input folder"):
        refuse_input_overwrite([], [data], folders=data / "train" / "new" / "deeper")  # not there yet
    (tmp_path / "link").symlink_to(data / "train", target_is_directory=True)
    with pytest.raises(OutputError, match="inside the input folder"):
        refuse_input_overwrite([], [data], folders=tmp_path / "link" / "run")


# ------------------------------------------------------------------------------------------------------ signals


def _popen(argv, **kw) -> subprocess.Popen:
    env = dict(os.environ, PYTHONPATH=str(REPO) + os.pathsep + os.environ.get("PYTHONPATH", ""))
    return subprocess.Popen([sys.executable, "-m", "fomm", *map(str, argv)], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, env=env, **kw)


def _signal_when_writing(proc: subprocess.Popen, folder: Path, signum: int, timeout: float = 240) -> tuple[int, str]:
    """Send ``signum`` once a hidden temporary appears under ``folder`` (the writer is mid-output)."""
    deadline = time.monotonic() + timeout
    while not leftovers(folder):
        if proc.poll() is not None or time.monotonic() > deadline:
            proc.kill()
            out, err = proc.communicate()
            pytest.fail(f"no temporary output appeared before the run ended (rc {proc.returncode}):\n{err}")
        time.sleep(0.05)
    time.sleep(0.3)  # a few frames into the output
    proc.send_signal(signum)
    _, err = proc.communicate(timeout=120)
    return proc.returncode, err


@pytest.fixture(scope="module")
def long_driving(tmp_path_factory):
    # Long enough that the run is still writing when the signal comes, on any machine.
    return make_video(tmp_path_factory.mktemp("long") / "long.mp4", frames=3000)


@pytest.mark.parametrize("signum, output", [(signal.SIGTERM, "out.mp4"), (signal.SIGHUP, "frames/")])
def test_signal_during_animate_leaves_nothing(tmp_path, long_driving, signum, output):
    out_dir = tmp_path / "out"
    out_dir.mkdir()
    target = str(out_dir / output) + ("/" if output.endswith("/") else "")  # Path drops the slash
    proc = _popen(["animate", "--source", EXAMPLES / "body-source.png", "--driving", long_driving, "--pretrained",
                   "actions-64", "-q", "-o", target])
    rc, err = _signal_when_writing(proc, out_dir, signum)
    assert rc == 128 + signum, err
    assert err.strip().splitlines()[-1] == "fomm: terminated", err
    assert "Traceback" not in err
    assert list(out_dir.iterdir()) == [], "output or temporary left behind"


def test_sigterm_during_prepare_with_workers_leaves_only_finished_chunks(tmp_path):
    videos = tmp_path / "raw"
    rows = ""
    for name in ("a", "b", "c"):
        make_video(videos / f"{name}.mp4", frames=1500, size=128)
        rows += f"{name},0,1490,0-0-128-128,25,128,128,train,id1\n"
    meta = tmp_path / "meta.csv"
    meta.write_text(VOX + rows)
    out = tmp_path / "out"
    proc = _popen(["prepare", "vox", "--metadata", meta, "--videos", videos, "-o", out, "--workers", "2",
                   "--size", "128", "--format", "png", "-q"])
    rc, err = _signal_when_writing(proc, tmp_path / "out", signal.SIGTERM)
    assert rc == 128 + signal.SIGTERM, err
    assert "Traceback" not in err and err.strip().splitlines()[-1] == "fomm: terminated", err
    assert leftovers(out) == []
    for chunk in (out / "train").iterdir():  # anything there is a finished chunk: 1490 frames
        assert len(list(chunk.glob("*.png"))) == 1490, chunk


def test_a_closed_stdout_pipe_ends_quietly(tmp_path):
    """`fomm ... | head`: when the reader goes away, fomm exits 141 (SIGPIPE's code) without a traceback."""
    import subprocess
    import sys

    script = tmp_path / "run.py"
    script.write_text(
        "import fomm.cli.export_onnx as sub\n"
        "def chatty(args):\n"
        "    for i in range(200000):\n"
        "        print('line', i)\n"
        "sub.main = chatty\n"
        "from fomm.cli.main import main\n"
        "import sys\n"
        "sys.exit(main(['export-onnx', '--random-weights', '-o', 'x']))\n")
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[1])}
    proc = subprocess.run(f"{sys.executable} {script} | head -n 2", shell=True, capture_output=True, text=True,
                          env=env, cwd=tmp_path, executable="/bin/bash")
    assert proc.stdout.splitlines() == ["line 0", "line 1"]
    assert "Traceback" not in proc.stderr and "BrokenPipe" not in proc.stderr, proc.stderr


def test_live_recording_never_replaces_an_input(tmp_path):
    """`fomm live --output record:FILE` where FILE is the driving clip, a link to it, or a photo of the --source
    folder: refused before anything runs, the input and the link unchanged."""
    from fomm.assets import example_path

    photos = tmp_path / "photos"
    photos.mkdir()
    shutil.copy(example_path("body-source.png"), photos / "a.png")
    driving = tmp_path / "d.mp4"
    shutil.copy(example_path("body-driving.mp4"), driving)
    link = tmp_path / "link.mp4"
    link.symlink_to(driving.name)
    inputs = [photos, driving, link]
    for target in (driving, link, photos / "a.png"):
        assert_refused(["live", "--source", photos, "--driving", driving, "--pretrained", "actions-64",
                        "--output", f"record:{target}", "--once", "--every-frame"], inputs=inputs,
                       match="choose another output path")
