#!/usr/bin/env python
"""
The SharedKD demo on the CPU and the embedded shapes dataset (what ``make demo`` runs):

    dataset -> tiny teacher -> {tiny student alone, the same student with Shared-KD}
    [-> teaching assistant -> teacher auto-encoder -> the same student with M-KD  (--mkd)]
    -> AP table, ap_vs_iteration.png, qualitative.png, feature_gaps.png

    python tools/demo.py [--output-dir output/demo] [--mkd] [--dry-run] [--stage-opts K V ...]

Every training stage is a plain ``train_net.py`` run (same configs as ``configs/shapes/``, the
students with the same schedule and seed), evaluated by ``COCOEvaluator`` on ``shapes_val``,
and skipped when its output exists (an interrupted stage resumes). The two students train side
by side, one thread each, evaluated every 100 iterations. Writes to the output folder:
``results.md`` / ``results.json`` (the AP table), ``ap_vs_iteration.png`` (the students' AP
during training), ``qualitative.png`` (ground truth, teacher,
student alone, distilled student on validation images), ``feature_gaps.{png,md,json}`` (the
teacher x student and student x student level gaps of the student trained alone),
``feature_gaps_sharedkd/`` (the same for the distilled student), ``cost.{md,json}`` (each
model's parameters, GFLOPs, latency and peak memory beside the teacher's, also in
``results.md``) and ``sharedkd_student.ts`` (the distilled student as TorchScript, which runs
with torch and torchvision alone; ``.ts.json`` names its outputs).
"""

import argparse
import json
import os
import sys
import time

from shared_kd.analysis.common import load_detector
from shared_kd.analysis.feature_gaps import feature_gaps_from_files, write_feature_gaps
from shared_kd.analysis.qualitative import qualitative_grid
from shared_kd.analysis.study import plot_ap_curves, read_curve
from shared_kd.benchmark import (
    compare_costs,
    costs_markdown,
    load_test_images,
    measure_in_fresh_process,
)
from shared_kd.data import ensure_shapes_dataset
from shared_kd.deploy import export_detector
from shared_kd.pipeline import (
    EXPORTED,
    FINAL,
    Stage,
    final_bbox_metrics,
    markdown_table,
    mkd_stages,
    recorded_seconds,
    run_stage,
    run_stages_side_by_side,
)

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SHAPES = os.path.join("configs", "shapes")
PREFIX = "[demo]"
# One data loader process, the studies' setting: a run at a given thread count then repeats
# (the student alone scored 28.5 AP in two demo runs).
ONE_LOADER = ["DATALOADER.NUM_WORKERS", "0"]
# The students' overrides, as in the studies: an evaluation every 100 iterations for the AP
# curve, and one data loader process.
STUDENT_OPTS = ["TEST.EVAL_PERIOD", "100"] + ONE_LOADER
# The demo's teacher: ResNet-18 FPN-128 on the R34 teacher's schedule (600 iterations). It costs
# three quarters of the studies' R34 FPN-128 teacher per iteration, which is what fits the demo
# in 12 minutes on 2 cores (the teacher is most of the demo's time), and stays 14 AP above the
# student alone (42.5 against the R34's 50.8).
TEACHER_CONFIG = os.path.join(SHAPES, "faster_rcnn_R18_FPN128_tiny_teacher.yaml")
# The seeded study of these students (mean +- std over seeds, the README's results).
STUDY = os.path.join("configs", "studies", "sharedkd_faster_rcnn.yaml")
STUDY_OUTPUT = os.path.join("output", "studies", "sharedkd_faster_rcnn", "study.md")


def build_stages(out, mkd=False, extra_opts=()):
    """
    The training stages, in order, as (row label or None, Stage); ``extra_opts`` (KEY VALUE
    pairs) are appended to every stage's overrides.
    """

    # M-KD's sequence in folders of ``out``, with the demo's teacher in place of the R34 one:
    # every distilled student (and M-KD's guides) reads that teacher's config and weights.
    _, assistant, autoencoder, mkd_student = mkd_stages("faster_rcnn", out)
    teacher = Stage("teacher", TEACHER_CONFIG, os.path.join(out, "teacher"), ONE_LOADER)
    teacher_config = ["MODEL.DISTILL.TEACHER.CONFIG_FILE", TEACHER_CONFIG]
    teacher_weights = ["MODEL.DISTILL.TEACHER.WEIGHTS", os.path.join(teacher.output_dir, FINAL)]
    stages = [
        ("teacher (R18 FPN-128)", teacher),
        (
            "student alone (R18 FPN-64)",
            Stage(
                "student alone",
                os.path.join(SHAPES, "faster_rcnn_R18_FPN_tiny.yaml"),
                os.path.join(out, "student_alone"),
                STUDENT_OPTS,
            ),
        ),
        (
            "student + Shared-KD",
            Stage(
                "Shared-KD student",
                os.path.join(SHAPES, "sharedkd_faster_rcnn_R18FPN128_to_R18_FPN_tiny.yaml"),
                os.path.join(out, "sharedkd_student"),
                teacher_weights + STUDENT_OPTS,  # the config names the demo teacher
                done_file=EXPORTED,
            ),
        ),
    ]
    if mkd:
        # the guides are not rows of the table; mkd_stages already points them and the student
        # at the teacher's weights in ``out``
        for stage in (assistant, autoencoder, mkd_student):
            stage.opts = list(stage.opts) + teacher_config
        mkd_student.opts = list(mkd_student.opts) + STUDENT_OPTS
        stages += [(None, assistant), (None, autoencoder), ("student + M-KD", mkd_student)]
    for _, stage in stages:
        stage.opts = list(stage.opts) + list(extra_opts)
    return stages


def models_for_pictures(out, stages):
    """(column title, config, weights) of every row's model: the exported students for KD runs."""
    models = []
    for label, stage in stages:
        if label is None:
            continue
        if stage.done_file.startswith("student"):
            folder = os.path.join(stage.output_dir, "student")
            models.append((label, f"{folder}/config.yaml", f"{folder}/model_final.pth"))
        else:
            models.append((label, stage.config_file, f"{stage.output_dir}/model_final.pth"))
    return models


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.strip().split("\n")[0])
    parser.add_argument("--output-dir", default=os.path.join("output", "demo"))
    parser.add_argument("--mkd", action="store_true", help="also train the M-KD student")
    parser.add_argument("--dry-run", action="store_true", help="print the stages only")
    parser.add_argument(
        "--stage-opts",
        nargs="+",
        default=[],
        metavar="KEY VALUE",
        help="config overrides for every training stage (e.g. SOLVER.MAX_ITER 20 for a smoke run)",
    )
    parser.add_argument("--cost-images", type=int, default=5, help="test images for GFLOPs")
    parser.add_argument("--latency-runs", type=int, default=20, help="timed runs per model")
    parser.add_argument(
        "--gap-images", type=int, default=50, help="shapes_val images for the feature gaps"
    )
    args = parser.parse_args(argv)
    os.chdir(ROOT)  # configs name their inputs relative to the repository root
    out = args.output_dir
    start = time.perf_counter()

    print(f"{PREFIX} dataset: {ensure_shapes_dataset()}", flush=True)
    stages = build_stages(out, mkd=args.mkd, extra_opts=args.stage_opts)
    # The teacher with every core, then the two students side by side (one thread each), then
    # the M-KD guides and student in order.
    (_, teacher), alone, distilled = stages[:3]
    ran = {}
    ran[teacher.name] = run_stage(teacher, ROOT, prefix=PREFIX, dry_run=args.dry_run) is not None
    students = [alone[1], distilled[1]]
    was_done = {s.name: s.is_done() for s in students}
    failed = run_stages_side_by_side(students, ROOT, prefix=PREFIX, dry_run=args.dry_run)
    if failed:
        raise SystemExit(f"{PREFIX} failed: {failed} (see their stage.log)")
    ran.update({name: not done for name, done in was_done.items()})
    for _, stage in stages[3:]:
        ran[stage.name] = run_stage(stage, ROOT, prefix=PREFIX, dry_run=args.dry_run) is not None
    if args.dry_run:
        return None
    rows = [
        {
            "stage": label,
            "output_dir": stage.output_dir,
            "seconds": recorded_seconds(stage.output_dir),
            "trained_in_this_run": ran[stage.name],
            "bbox": final_bbox_metrics(stage.output_dir),
        }
        for label, stage in stages
        if label is not None
    ]

    table = markdown_table(rows, "shapes_val, box AP")
    curves = os.path.join(out, "ap_vs_iteration.png")
    plot_ap_curves(
        [
            (label, c["iterations"], c.get("bbox/AP", []), None)
            for label, stage in stages[1:]
            if label is not None
            for c in [read_curve(stage.output_dir)]
        ],
        curves,
        "students on shapes_val (one seed)",
        ylabel="box AP",
    )
    models = models_for_pictures(out, stages)
    picture = os.path.join(out, "qualitative.png")
    if os.path.isfile(picture):
        print(f"{PREFIX} qualitative.png: done, skipped", flush=True)
    else:
        print(f"{PREFIX} qualitative.png: drawing {[m[0] for m in models]}", flush=True)
        qualitative_grid(models, picture, dataset="shapes_val", num_images=4)

    # The student alone answers the paper's premise (gaps inside a student, before any
    # cross-layer distillation, vs its gaps to the teacher); the distilled student's gaps show
    # what Shared-KD changed.
    (_, t_cfg, t_weights), alone, distilled = models[0], models[1], models[2]
    gap_runs = [
        ("student_alone", alone, out),
        ("sharedkd_student", distilled, os.path.join(out, "feature_gaps_sharedkd")),
    ]
    gaps = {}
    for name, (label, s_cfg, s_weights), folder in gap_runs:
        json_path = os.path.join(folder, "feature_gaps.json")
        if os.path.isfile(json_path):
            print(f"{PREFIX} feature gaps ({label}): done, skipped", flush=True)
        else:
            print(f"{PREFIX} feature gaps ({label}): teacher x student on shapes_val", flush=True)
            result = feature_gaps_from_files(
                t_cfg, t_weights, s_cfg, s_weights, dataset="shapes_val", num_images=args.gap_images
            )
            os.makedirs(folder, exist_ok=True)
            write_feature_gaps(result, folder)
        with open(json_path) as f:
            gaps[name] = json.load(f)

    costs = cost_report(out, models, args.cost_images, args.latency_runs)
    exported = export_student_torchscript(out, distilled)

    results = {
        "rows": rows,
        "cost": costs,
        "torchscript": exported,
        "feature_gaps": {k: v.get("premise") for k, v in gaps.items()},
        "pictures": {
            "ap_vs_iteration": curves,
            "qualitative": picture,
            "feature_gaps": os.path.join(out, "feature_gaps.png"),
        },
        "demo_seconds_this_run": round(time.perf_counter() - start, 1),
        "command": " ".join([os.path.basename(sys.executable), "tools/demo.py", *(argv or [])]),
    }
    table += "\n\nWhat each model costs at inference (each measured in a fresh process):\n\n"
    table += costs_markdown(costs)
    with open(os.path.join(out, "results.md"), "w") as f:
        f.write(table + "\n")
    with open(os.path.join(out, "results.json"), "w") as f:
        json.dump(results, f, indent=2)
    print(table)
    for name, premise in results["feature_gaps"].items():
        print(f"{PREFIX} feature gaps, {name}: {premise}")
    print(
        f"{PREFIX} wrote {out}/results.md, results.json, ap_vs_iteration.png, qualitative.png, "
        f"feature_gaps.png, cost.md, {os.path.basename(exported)}"
    )
    # One seed says little on its own: single runs of these students differ by several AP.
    study_at = STUDY_OUTPUT if os.path.isfile(STUDY_OUTPUT) else "README.md (Results)"
    print(
        f"{PREFIX} this is one seed (SEED of the configs); mean +- std over seeds: {study_at}, "
        f"from `make study STUDY={STUDY}`"
    )
    print(f"{PREFIX} this run took {results['demo_seconds_this_run']:.0f} s")
    return results


def cost_report(out, models, num_images, latency_runs):
    """Parameters, GFLOPs, latency and peak memory of every model, beside the first (the
    teacher's); ``cost.json`` / ``cost.md``, skipped when ``cost.json`` exists."""
    path = os.path.join(out, "cost.json")
    if os.path.isfile(path):
        print(f"{PREFIX} cost: done, skipped", flush=True)
        with open(path) as f:
            return json.load(f)
    costs = {}
    for label, config, weights in models:
        print(f"{PREFIX} cost: {label}", flush=True)
        costs[label] = measure_in_fresh_process(
            config_file=config,
            weights=weights,
            num_images=num_images,
            latency_runs=latency_runs,
            dataset="shapes_val",
        )
    rows = compare_costs(costs, models[0][0])
    with open(os.path.join(out, "cost.md"), "w") as f:
        f.write(costs_markdown(rows) + "\n")
    with open(path, "w") as f:
        json.dump(rows, f, indent=2)
    return rows


def export_student_torchscript(out, distilled):
    """The distilled student as TorchScript, traced on the first shapes_val image."""
    path = os.path.join(out, "sharedkd_student.ts")
    if os.path.isfile(path):
        print(f"{PREFIX} {os.path.basename(path)}: done, skipped", flush=True)
        return path
    _, config_file, weights = distilled
    model, config = load_detector(config_file, weights)
    image = load_test_images(config, 1, dataset="shapes_val")[0]["image"]
    export_detector(model, image, path, "torchscript", config.input_format)
    print(f"{PREFIX} {os.path.basename(path)}: the Shared-KD student as TorchScript", flush=True)
    return path


if __name__ == "__main__":
    main()
