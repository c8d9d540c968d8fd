"""The check's report as markdown (``gpu_check.md``, printed at the end of a run)."""

from .common import PARTS

PAPER_TABLE4_GB = {"Shared-KD": 3.8, "SemCKD": 4.5}  # RetinaNet R101 -> R50, per GPU


def _fmt(v, spec="{:.1f}", none="-"):
    return none if v is None else spec.format(v)


def format_markdown(report):
    env = report.get("environment", {})
    parts = report["parts"]
    lines = ["# SharedKD GPU check", ""]
    if env.get("gpu"):
        lines.append(
            f"Device: {env['gpu']} (sm {env.get('capability')}, "
            f"{env.get('gpu_memory_gib', 0):.0f} GiB); torch {env.get('torch')} (CUDA "
            f"{env.get('cuda')}, cuDNN {env.get('cudnn')}, TF32 conv {env.get('tf32_conv')}), "
            f"torchvision {env.get('torchvision')}, detectron2 {env.get('detectron2')}, Python "
            f"{env.get('python')}."
        )
    elif env.get("torch"):
        lines.append(
            f"Device: CPU ({report.get('device')}; smoke run); torch {env.get('torch')}, "
            f"detectron2 {env.get('detectron2')}, Python {env.get('python')}."
        )
    if env and not env.get("imports_ok"):
        why = env.get("import_error") or env.get("error") or ""
        lines.append(f"SharedKD does not import: {why.strip().splitlines()[-1:]}")
    lines += [
        f"Started {report['started']}; {report.get('elapsed_s', 0):.0f} s of a "
        f"{report['budget_s']:.0f} s budget. Overall: "
        f"**{'PASS' if report.get('ok') else 'FAIL'}**.",
        "",
        "| part | result | seconds | summary |",
        "|---|---|---:|---|",
    ]
    for name in PARTS:
        p = parts.get(name)
        if p is None:
            continue
        result = "skipped" if p.get("skipped") else ("ok" if p.get("ok") else "FAIL")
        lines.append(
            f"| {name} | {result} | {_fmt(p.get('seconds'), '{:.0f}')} | {_summary(name, p)} |"
        )
    if "tests" in parts and parts["tests"].get("cases"):
        lines += ["", "## (a) `gpu` tests", "", "| test | outcome | s |", "|---|---|---:|"]
        for c in parts["tests"]["cases"]:
            lines.append(f"| {c['name']} | {c['outcome']} | {c['seconds']:.1f} |")
        for c in parts["tests"]["cases"]:
            if c["outcome"] in ("failed", "error"):
                msg = c["message"].replace("\n", " ")[:400]
                lines.append(f"\n- **{c['name']}**: {msg}")
    if "train" in parts and "teacher" in parts["train"]:
        lines += _train_lines(parts["train"])
    if "bench" in parts and parts["bench"].get("runs"):
        lines += _bench_lines(parts["bench"])
    if "cost" in parts and parts["cost"].get("markdown"):
        lines += ["", "## (d) `tools/cost_report.py`, inference cost (random weights)", ""]
        lines += [parts["cost"]["markdown"].rstrip()]
    errors = _errors(parts)
    if errors:
        lines += ["", "## Errors (the ends of their output; all of it in gpu_check.log)", ""]
        for where, text in errors:
            lines += [f"{where}:", "```", text[-2000:], "```"]
    return "\n".join(lines) + "\n"


def _errors(parts):
    """(where, text) of every failure in the report, nested runs included."""
    out = []
    for name, p in parts.items():
        if p.get("error"):
            out.append((name, p["error"]))
        elif not p.get("ok") and p.get("tail"):
            out.append((name, p["tail"]))
        for role in ("teacher", "student", "lazy_student"):
            if (p.get(role) or {}).get("tail"):
                out.append((f"{name}: {role}", p[role]["tail"]))
        for r in p.get("runs", []):
            if r.get("tail"):
                out.append((f"{name}: {r['family']} x{r['batch']}", r["tail"]))
    return out


def _summary(name, p):
    if p.get("skipped"):
        return p["skipped"]
    if p.get("error"):
        return p["error"].splitlines()[0][:120]
    if name == "install":
        detail = (p.get("detail") or "").strip().splitlines()
        return p.get("action", "") + (f": {detail[-1][:80]}" if detail else "")
    if name == "tests":
        c = p.get("counts", {})
        return ", ".join(f"{v} {k}" for k, v in c.items() if v) or "no tests ran"
    if name == "train":
        s = p.get("student") or {}
        lazy = p.get("lazy_student") or {}
        ap = (s.get("ap") or {}).get("AP")
        return (
            f"student {s.get('iterations', 0)} it, {_fmt(s.get('iters_per_s'))} it/s, AP "
            f"{_fmt(ap)}, losses {'finite' if s.get('finite_losses') else 'NOT finite'}"
            + (" (AMP)" if p.get("amp") else "")
            + f"; .py student {lazy.get('iterations', 0)} it, losses "
            + ("finite" if lazy.get("finite_losses") else "NOT finite")
        )
    if name == "bench":
        runs = p.get("runs", [])
        done = sum(bool(r.get("ok")) for r in runs)
        return f"{done}/{len(runs)} configurations at {p.get('size')}" + (
            " with AMP" if p.get("amp") else ""
        )
    if name == "cost":
        rows = p.get("rows") or []
        return ", ".join(
            f"{r['model']} {r['gflops']['mean']:.0f} GFLOPs {r['latency_ms']['median']:.0f} ms"
            for r in rows
        )
    return ""


def _train_lines(p):
    lines = [
        "",
        "## (b) `train_net.py`, tiny Shared-KD (shapes)" + (" with AMP" if p.get("amp") else ""),
        "",
    ]
    lines += [
        "| run | iterations | it/s | median s/it | finite losses | last total loss | AP | AP50 |"
    ]
    lines += ["|---|---:|---:|---:|---|---:|---:|---:|"]
    for role in ("teacher", "student", "lazy_student"):
        s = p.get(role)
        if not s:
            continue
        ap = s.get("ap") or {}
        name = {"lazy_student": "student, .py configs"}.get(role, role)
        lines.append(
            f"| {name} | {s['iterations']} | {_fmt(s.get('iters_per_s'))} | "
            f"{_fmt(s.get('median_iter_s'), '{:.4f}')} | {s['finite_losses']} | "
            f"{_fmt(s['last_losses'].get('total_loss'), '{:.3f}')} | {_fmt(ap.get('AP'))} | "
            f"{_fmt(ap.get('AP50'))} |"
        )
    return lines


def _gb(b):
    return None if b is None else b / 1e9


def _bench_lines(p):
    lines = [
        "",
        f"## (c) `tools/benchmark.py`, {p['size']} inputs"
        + (", AMP" if p.get("amp") else "")
        + ", random weights",
        "",
        "Medians in ms. (b32): the guides' forward in fp32, as peers run a teacher; saving = "
        "1 - (b)/(b32). Targets: (c) <= 1.05 x ((a) + (b)) and (d) <= 3% of (c). Peak memory "
        "of a fresh process per model (CUDA: `torch.cuda.max_memory_allocated`; GB = 1e9 B). "
        "The targets are reported, not judged: the part passes when every configuration ran "
        "with finite losses.",
        "",
        "| family | batch | guides | (a) | (b) | (b32) | saving | (c) | (d) | (c)/((a)+(b)) | "
        "(d)/(c) | mem (a) GB | mem (c) GB |",
        "|---|---:|---|---:|---:|---:|---:|---:|---:|---|---|---:|---:|",
    ]
    for r in p["runs"]:
        if not r.get("median_ms"):
            why = r.get("skipped") or f"rc {r.get('rc')}" + (
                " (timed out)" if r.get("timed_out") else ""
            )
            lines.append(f"| {r['family']} | {r['batch']} | FAILED: {why} |" + " |" * 10)
            continue
        ms, tg, mem = r["median_ms"], r["targets"], r["peak_bytes"]
        ov, ls = tg["overhead"], tg["loss_share"]
        lines.append(
            f"| {r['family']} | {r['batch']} | {r.get('guide_precision')} | "
            f"{ms['student_step']:.1f} | {ms['teacher_forward']:.1f} | "
            f"{_fmt(ms.get('teacher_forward_fp32'))} | {_fmt(r.get('guide_saving'), '{:.0%}')} | "
            f"{ms['distill_step']:.1f} | {ms['distill_losses']:.1f} | "
            f"{ov['value']:.3f} {'PASS' if ov['passed'] else 'FAIL'} | "
            f"{ls['value']:.1%} {'PASS' if ls['passed'] else 'FAIL'} | "
            f"{_fmt(_gb(mem.get('student_step')), '{:.2f}')} | "
            f"{_fmt(_gb(mem.get('distill_step')), '{:.2f}')} |"
        )
    table4 = next(
        (
            r
            for r in p["runs"]
            if r["family"] == "retinanet" and r["batch"] == 2 and r.get("peak_bytes")
        ),
        None,
    )
    if table4 and table4["peak_bytes"].get("distill_step") and p.get("coco_scale"):
        ours = _gb(table4["peak_bytes"]["distill_step"])
        setting = f"(c) at 2 images of {p['size']}" + (" with AMP" if p.get("amp") else "")
        if table4.get("memory_kind") == "cuda_max_memory_allocated":
            held = _gb((table4.get("reserved_bytes") or {}).get("distill_step"))
            what = (
                f"**{ours:.2f} GB** allocated at peak, {_fmt(held, '{:.2f}')} GB held by "
                "PyTorch's allocator (plus the CUDA context, which nvidia-smi would add)"
            )
        else:
            what = f"**{ours:.2f} GB** peak RSS (CPU)"
        lines += [
            "",
            "Paper's Table 4 (RetinaNet R101 -> R50, memory per GPU; 2 images per GPU assumed): "
            f"Shared-KD {PAPER_TABLE4_GB['Shared-KD']} GB, SemCKD {PAPER_TABLE4_GB['SemCKD']} GB. "
            f"Here, {setting}: {what}.",
        ]
    return lines
