"""``fomm prepare vox|taichi`` and ``fomm crop``: dataset preparation and face auto-cropping."""

from __future__ import annotations

import argparse

from fomm.cli.common import RangeType, int_range, positive_int, side
from fomm.cli.safety import crop_outputs
from fomm.crop.boxes import DEFAULT_INCREASE


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("prepare", help="cut, crop and resize VoxCeleb/TaiChi chunks from the public metadata",
                       description="Build the train/test layout from raw videos you downloaded yourself; missing "
                                   "videos are listed, finished chunks are skipped on a rerun.")
    p.add_argument("kind", choices=("vox", "taichi"))
    p.add_argument("--metadata", required=True, help="vox-metadata.csv or taichi-metadata.csv")
    p.add_argument("--videos", required=True, help="folder of raw videos named by their YouTube id")
    p.add_argument("-o", "--out", required=True, help="output dataset folder (train/ and test/ are created)")
    p.add_argument("--format", choices=("mp4", "png"), default="mp4")
    p.add_argument("--size", type=side, default=256, help="output side in pixels, 16-8192 (default: %(default)s)")
    p.add_argument("--workers", type=int_range(1, 256), default=1,
                   help="processes decoding videos in parallel, 1-256 (default: %(default)s: in this process)")
    p.add_argument("--out-of-frame", choices=("clamp", "pad"), default="clamp",
                   help="boxes running past the frame: clamp to the frame (original tool) or pad with black")
    p.add_argument("-q", "--quiet", action="store_true")
    p.set_defaults(func=run_prepare)

    a = sub.add_parser("actions-split", help="lay out Monkey-Net's Actions clips in the leak-free split",
                       description="Actions clips 2k and 2k+1 are one recording and its mirror, and most upstream "
                                   "test clips have their mirror in train. This writes OUT/train and OUT/test "
                                   "with mirror pairs and two held-out performers kept on one side (see "
                                   "fomm.datasets.splits).")
    a.add_argument("--data", required=True, help="the Actions folder (holding train/ and test/)")
    a.add_argument("-o", "--out", required=True, help="output folder (train/ and test/ are created)")
    a.add_argument("--copy", action="store_true", help="copy the files instead of symlinking them")
    a.add_argument("--overwrite", action="store_true", help="replace OUT if it exists")
    a.set_defaults(func=run_actions_split)

    c = sub.add_parser("crop", help="find and track the face in a video and write stable square crops",
                       description="Detects the face (dlib; OpenCV as a fallback), splits at scene cuts or when "
                                   "the face is lost, and writes one cropped clip per segment, with audio.")
    c.add_argument("--video", required=True)
    c.add_argument("-o", "--output", required=True, help="output .mp4 (several segments: NAME_00.mp4, ...)")
    c.add_argument("--size", type=side, default=256, help="crop side in pixels, 16-8192 (default: %(default)s)")
    c.add_argument("--increase", type=RangeType(float, 0, 5), default=DEFAULT_INCREASE,
                   help="grow the face box by this fraction per side, 0-5 (default: %(default)s, whole head with "
                        "margin)")
    c.add_argument("--min-frames", type=positive_int, default=8, help="drop segments shorter than this (>= 1)")
    c.add_argument("-q", "--quiet", action="store_true")
    c.set_defaults(func=run_crop)


def run_prepare(args: argparse.Namespace) -> int:
    from fomm.datasets.prepare import prepare_dataset

    summary = prepare_dataset(args.kind, args.metadata, args.videos, args.out, format=args.format, size=args.size,
                              workers=args.workers, out_of_frame=args.out_of_frame, progress=not args.quiet)
    print(summary.format())
    return 0 if summary.ok else 1


def run_crop(args: argparse.Namespace) -> int:
    from fomm.crop.video import crop_video
    from fomm.io.atomic import refuse_input_overwrite

    refuse_input_overwrite(crop_outputs(args.output), args.video)
    results = crop_video(args.video, args.output, size=args.size, increase=args.increase,
                         min_frames=args.min_frames, progress=not args.quiet)
    for r in results:
        print(f"wrote {r.path} (frames {r.start}-{r.end}, box {tuple(int(v) for v in r.box)}, "
              f"{'with' if r.has_audio else 'no'} audio)")
    return 0


def run_actions_split(args: argparse.Namespace) -> int:
    from fomm.datasets.splits import ACTIONS_SPLIT, load_split, materialise_split

    split = load_split(ACTIONS_SPLIT)
    out = materialise_split(split, args.data, args.out, mode="copy" if args.copy else "symlink",
                            overwrite=args.overwrite)
    print(f"wrote {out}: {len(split['train'])} train and {len(split['test'])} test clips (leak-free split)")
    return 0
