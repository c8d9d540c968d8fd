#!/usr/bin/env python
"""
Feature gaps between a teacher's and a student's FPN levels, and among the student's levels.

    python tools/feature_gaps.py --teacher-config T.yaml --teacher-weights T.pth \\
        --student-config S.yaml --student-weights S.pth --output-dir DIR \\
        [--dataset shapes_val] [--num-images 50] [--levels p2 p3 ...] [--device cpu]

Writes ``DIR/feature_gaps.md`` (two markdown tables and the Shared-KD premise's numbers, also
printed), ``DIR/feature_gaps.json`` and ``DIR/feature_gaps.png`` (two heatmaps). The gap is the
aligned MSE of METHODS.md's feature losses, averaged over images; see
``shared_kd/analysis/feature_gaps.py``. Configs may be plain, exported-student or distillation
configs; checkpoints plain detectron2 ones or distillation ones (``student.*`` keys).
"""

import argparse

from shared_kd.analysis.feature_gaps import feature_gaps_from_files, write_feature_gaps


def parse_args(argv=None):
    parser = argparse.ArgumentParser(
        description=__doc__.strip().split("\n")[0],
        formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog="\n".join(__doc__.strip().split("\n")[1:]),
    )
    parser.add_argument("--teacher-config", required=True, help="the teacher's yaml config")
    parser.add_argument("--teacher-weights", required=True, help="the teacher's checkpoint")
    parser.add_argument("--student-config", required=True, help="the student's yaml config")
    parser.add_argument("--student-weights", required=True, help="the student's checkpoint")
    parser.add_argument(
        "--dataset",
        default=None,
        help="a registered dataset (default: the student config's DATASETS.TEST[0])",
    )
    parser.add_argument("--num-images", type=int, default=50, help="use the first N images")
    parser.add_argument(
        "--levels",
        nargs="+",
        default=None,
        help="FPN levels, fine to coarse (default: the student's levels the teacher has too)",
    )
    parser.add_argument("--device", default=None, help="cpu or cuda (default: the configs')")
    parser.add_argument("--output-dir", required=True, help="where to write feature_gaps.*")
    args = parser.parse_args(argv)
    if args.num_images < 1:
        parser.error("--num-images must be at least 1")
    return args


def main(argv=None):
    args = parse_args(argv)
    gaps = feature_gaps_from_files(
        args.teacher_config,
        args.teacher_weights,
        args.student_config,
        args.student_weights,
        dataset=args.dataset,
        num_images=args.num_images,
        levels=args.levels,
        device=args.device,
    )
    paths = write_feature_gaps(gaps, args.output_dir)
    print(gaps.to_markdown())
    print("Wrote " + ", ".join(paths[k] for k in ("md", "json", "png")))
    return gaps


if __name__ == "__main__":
    main()
