"""
The measured parts of the check, each in its own processes: (a) the ``gpu`` tests, (b)
``train_net.py`` on the tiny shapes configs, (c) ``tools/benchmark.py``, (d)
``tools/cost_report.py``.
"""

import json
import math
import os
import re
import statistics
import time
import xml.etree.ElementTree as ET

# (b): the tiny shapes configs (paths from the repository root).
TRAIN_TEACHER = "configs/shapes/faster_rcnn_R34_FPN_tiny_teacher.yaml"
TRAIN_STUDENT = "configs/shapes/sharedkd_faster_rcnn_R34_to_R18_FPN_tiny.yaml"
# The LazyConfig twin: its .py teacher takes the yaml teacher's weights (the same detector).
TRAIN_LAZY_STUDENT = "configs/shapes/sharedkd_faster_rcnn_R34_to_R18_FPN_tiny.py"
# (c): family -> (COCO config, tiny config for the CPU smoke run)
BENCH_CONFIGS = {
    "retinanet": (
        "configs/COCO/sharedkd_retinanet_R101_to_R50_FPN_2x.yaml",
        "configs/shapes/sharedkd_retinanet_R34_to_R18_FPN_tiny.yaml",
    ),
    "faster_rcnn": (
        "configs/COCO/sharedkd_faster_rcnn_R101_to_R50_FPN_2x.yaml",
        "configs/shapes/sharedkd_faster_rcnn_R34_to_R18_FPN_tiny.yaml",
    ),
}
# (d): the deployment table of docs/BENCHMARK.md: (name, COCO config, tiny config for the smoke run)
COST_MODELS = [
    (
        "teacher R101",
        "model_zoo:COCO-Detection/faster_rcnn_R_101_FPN_3x.yaml",
        "configs/shapes/faster_rcnn_R34_FPN_tiny_teacher.yaml",
    ),
    (
        "student R50",
        "configs/COCO/faster_rcnn_R50_FPN_2x.yaml",
        "configs/shapes/faster_rcnn_R18_FPN_tiny.yaml",
    ),
    (
        "student R18",
        "configs/COCO/faster_rcnn_R18_FPN_2x.yaml",
        "configs/shapes/faster_rcnn_R18_FPN_tiny.py",
    ),
]


# (a) tests -----------------------------------------------------------------------------------


def part_tests(check):
    junit = os.path.join(check.work, "junit.xml")
    res = check.python(
        "(a) gpu tests",
        ["-m", "pytest", "tests/gpu", "-m", "gpu", "-q", "-p", "no:cacheprovider"]
        + ["--junitxml", junit],
        min(check.allowance("tests"), check.args.tests_timeout),
    )
    cases = []
    if os.path.exists(junit):
        for case in ET.parse(junit).getroot().iter("testcase"):
            outcome, message = "passed", ""
            for kind in ("failure", "error", "skipped"):
                node = case.find(kind)
                if node is not None:
                    outcome = {"failure": "failed", "error": "error"}.get(kind, "skipped")
                    message = (node.get("message") or node.text or "")[:600]
            cases.append(
                {
                    "name": case.get("name"),
                    "outcome": outcome,
                    "seconds": float(case.get("time") or 0),
                    "message": message,
                }
            )
    counts = {
        k: sum(c["outcome"] == k for c in cases) for k in ("passed", "failed", "error", "skipped")
    }
    # pytest exits 5 when every test was deselected, 0 when all passed or were skipped
    ok = res["rc"] == 0 and not counts["failed"] and not counts["error"]
    return {"ok": ok, "rc": res["rc"], "counts": counts, "cases": cases, "tail": res["tail"]}


# (b) train_net.py ---------------------------------------------------------------------------


def _metrics(path):
    rows = []
    if os.path.exists(path):
        with open(path) as f:
            for line in f:
                line = line.strip()
                if line:
                    try:
                        rows.append(json.loads(line))
                    except ValueError:
                        continue  # a line cut short when the part's time ran out and it was killed
    return rows


def _speed(output):
    """detectron2's 'Overall training speed: N iterations in H:MM:SS (X s / it)'."""
    m = re.search(r"Overall training speed: (\d+) iterations in \S+ \(([\d.]+) s / it\)", output)
    return (int(m.group(1)), float(m.group(2))) if m else (None, None)


def _train_summary(run, out_dir):
    rows = _metrics(os.path.join(out_dir, "metrics.json"))
    train = [r for r in rows if "total_loss" in r]
    losses = {k for r in train for k in r if k.startswith("loss_") or k == "total_loss"}
    finite = bool(train) and all(
        math.isfinite(r[k]) for r in train for k in losses if isinstance(r.get(k), (int, float))
    )
    times = [r["time"] for r in train if isinstance(r.get("time"), (int, float))]
    iters, s_per_it = _speed(run["output"])
    # detectron2's own figure; without it (under 5 iterations), from the logged iteration times
    speed = 1.0 / s_per_it if s_per_it else (1.0 / statistics.median(times) if times else None)
    ap = next((r for r in reversed(rows) if "bbox/AP" in r), None)
    return {
        "ok": run["rc"] == 0 and finite,
        "rc": run["rc"],
        "timed_out": run["timed_out"],
        "seconds": run["seconds"],
        "iterations": (train[-1]["iteration"] + 1) if train else 0,
        "finite_losses": finite,
        "last_losses": {k: train[-1][k] for k in sorted(losses) if k in train[-1]} if train else {},
        "median_iter_s": statistics.median(times) if times else None,
        "iters_per_s": speed,
        "overall_iterations": iters,
        "ap": {k[len("bbox/") :]: v for k, v in ap.items() if k.startswith("bbox/")}
        if ap
        else None,
        "tail": run["tail"] if run["rc"] != 0 else "",
    }


def part_train(check):
    cuda = check.device == "cuda"
    iters = check.args.train_iters
    common = ["MODEL.DEVICE", check.device, "SOLVER.AMP.ENABLED", str(cuda)]
    if cuda:
        common += ["DATALOADER.NUM_WORKERS", "4"]
    else:  # the smoke run: few and small steps, evaluated on 64 px images (half the time)
        common += ["DATALOADER.NUM_WORKERS", "0", "SOLVER.IMS_PER_BATCH", "2"]
        common += ["SOLVER.WARMUP_ITERS", "2"]
        common += ["INPUT.MIN_SIZE_TEST", "64", "INPUT.MAX_SIZE_TEST", "64"]
    teacher_dir = os.path.join(check.work, "teacher")
    student_dir = os.path.join(check.work, "student")
    budget = check.allowance("train")
    t0 = time.monotonic()
    teacher = check.python(
        "(b) train_net.py teacher",
        ["train_net.py", "--config-file", TRAIN_TEACHER, "--overwrite"]
        + common
        + ["SOLVER.MAX_ITER", str(iters), "DATASETS.TEST", "()", "OUTPUT_DIR", teacher_dir],
        budget * 0.45,
    )
    result = {"amp": cuda, "teacher": _train_summary(teacher, teacher_dir)}
    if teacher["rc"] != 0:
        result["ok"] = False
        return result
    student = check.python(
        "(b) train_net.py Shared-KD student",
        ["train_net.py", "--config-file", TRAIN_STUDENT, "--overwrite"]
        + common
        + ["SOLVER.MAX_ITER", str(iters), "OUTPUT_DIR", student_dir]
        + ["MODEL.DISTILL.TEACHER.WEIGHTS", os.path.join(teacher_dir, "model_final.pth")],
        budget - (time.monotonic() - t0),
    )
    result["student"] = _train_summary(student, student_dir)
    lazy_dir = os.path.join(check.work, "lazy_student")
    lazy_common = [f"train.device={check.device}", f"train.amp.enabled={cuda}"]
    if cuda:
        lazy_common += ["dataloader.train.num_workers=4"]
    else:
        lazy_common += ["dataloader.train.num_workers=0", "dataloader.train.total_batch_size=2"]
        resize = "dataloader.test.mapper.augmentations.0"  # the test loader's ResizeShortestEdge
        lazy_common += ["dataloader.test.num_workers=0"]
        lazy_common += [f"{resize}.short_edge_length=64", f"{resize}.max_size=64"]
    lazy = check.python(
        "(b) train_net.py Shared-KD student, LazyConfig (.py teacher and student)",
        ["train_net.py", "--config-file", TRAIN_LAZY_STUDENT, "--overwrite"]
        + lazy_common
        + [f"train.max_iter={iters}", f"train.output_dir={lazy_dir}"]
        + [f"model.guides.0.weights={os.path.join(teacher_dir, 'model_final.pth')}"],
        budget - (time.monotonic() - t0),
    )
    result["lazy_student"] = _train_summary(lazy, lazy_dir)
    result["ok"] = result["teacher"]["ok"] and result["student"]["ok"]
    result["ok"] = result["ok"] and result["student"]["ap"] is not None
    result["ok"] = result["ok"] and result["lazy_student"]["ok"]
    return result


# (c) benchmark -------------------------------------------------------------------------------


def part_bench(check):
    a = check.args
    runs = []
    # Table 4's setting first (RetinaNet, 2 images per GPU), the larger batches last.
    for batch in a.bench_batches:
        for family in a.bench_families:
            runs.append((family, batch))
    results, per_run = [], []
    for family, batch in runs:
        config = BENCH_CONFIGS[family][0 if a.bench_coco else 1]
        if per_run and check.remaining() < 1.2 * max(per_run):
            results.append({"family": family, "batch": batch, "ok": False, "skipped": "time"})
            continue
        out = os.path.join(check.work, f"bench_{family}_b{batch}.json")
        cmd = ["tools/benchmark.py", "--config-file", config, "--random-teacher"]
        cmd += ["--iters", str(a.bench_iters), "--warmup", str(a.bench_warmup), "--output", out]
        cmd += ["--synthetic", a.bench_size] + (["--amp"] if a.bench_amp else [])
        cmd += [] if a.bench_memory else ["--no-memory"]
        cmd += ["SOLVER.IMS_PER_BATCH", str(batch), "MODEL.DEVICE", check.device]
        res = check.python(f"(c) benchmark {family} x{batch}", cmd, check.remaining())
        per_run.append(res["seconds"])
        entry = {"family": family, "batch": batch, "config": config, "seconds": res["seconds"]}
        if res["rc"] == 0 and os.path.exists(out):
            with open(out) as f:
                full = json.load(f)
            entry.update(_bench_summary(full))
        else:
            entry.update(ok=False, rc=res["rc"], timed_out=res["timed_out"], tail=res["tail"])
        results.append(entry)
    return {
        "ok": bool(results) and all(r.get("ok") for r in results),
        "amp": a.bench_amp,
        "size": a.bench_size,
        "coco_scale": a.bench_coco,
        "iters": a.bench_iters,
        "warmup": a.bench_warmup,
        "runs": results,
    }


# (d) inference cost ---------------------------------------------------------------------------


def part_cost(check):
    """tools/cost_report.py: the teacher and two students at COCO scale (random weights)."""
    a = check.args
    out = os.path.join(check.work, "cost")
    cmd = ["tools/cost_report.py", "--device", check.device, "--output-dir", out]
    for name, coco, tiny in COST_MODELS:
        cmd += ["--model", name, coco if a.bench_coco else tiny, "-"]
    if a.bench_coco:
        cmd += ["--synthetic", a.bench_size, "--num-images", "2", "--latency-runs", "20"]
    else:  # the smoke run
        cmd += ["--synthetic", "128x128", "--num-images", "1", "--latency-runs", "2"]
    res = check.python("(d) cost report", cmd, check.allowance("cost"))
    result = {"ok": res["rc"] == 0, "rc": res["rc"], "seconds": res["seconds"]}
    if res["rc"] == 0 and os.path.exists(os.path.join(out, "cost.json")):
        with open(os.path.join(out, "cost.json")) as f:
            result["rows"] = json.load(f)
        with open(os.path.join(out, "cost.md")) as f:
            result["markdown"] = f.read()
    else:
        result.update(ok=False, tail=res["tail"])
    return result


def _bench_summary(r):
    t = {k: v["median_s"] for k, v in r["timings"].items()}
    mem = {k: (v or {}).get("peak_bytes") for k, v in r["memory"].items()}
    reserved = {k: (v or {}).get("reserved_bytes") for k, v in r["memory"].items()}
    finite = all(math.isfinite(v) for v in r["final_losses"].values())
    b, b32 = t.get("teacher_forward"), t.get("teacher_forward_fp32")
    return {
        "ok": finite,
        "finite_losses": finite,
        "final_losses": r["final_losses"],
        "median_ms": {k: v * 1e3 for k, v in t.items()},
        "guide_precision": r.get("guide_precision"),
        "guide_saving": (1 - b / b32) if b and b32 else None,
        "peak_bytes": mem,
        "reserved_bytes": reserved,
        "memory_kind": next((v["kind"] for v in r["memory"].values() if v), None),
        "targets": {
            k: {"value": v["value"], "limit": v["limit"], "passed": v["passed"]}
            for k, v in r["targets"].items()
        },
        "image_sizes": r["image_sizes"][:1],
        "device_name": r["device_name"],
    }
