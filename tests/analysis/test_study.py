"""shared_kd.analysis.study on hand-made metrics.json files: specs, curves, mean +- std, tables."""

import json
import math
import os

import pytest
from PIL import Image

from shared_kd.analysis.study import (
    StudySpec,
    load_study_spec,
    mean_std,
    plot_study,
    read_curve,
    slug,
    study_markdown,
    summarize_study,
)
from shared_kd.pipeline import TIME_FILE

TEACHER_CFG = "configs/shapes/faster_rcnn_R34_FPN_tiny_teacher.yaml"
STUDENT_CFG = "configs/shapes/faster_rcnn_R18_FPN_tiny.yaml"
SKD_CFG = "configs/shapes/sharedkd_faster_rcnn_R34_to_R18_FPN_tiny.yaml"


# ---------------------------------------------------------------------------------------------
# mean_std


def test_mean_std_by_hand():
    # mean 4; deviations -2, 0, 2: sample variance (4 + 0 + 4) / 2 = 4, std 2
    assert mean_std([2.0, 4.0, 6.0]) == {"mean": 4.0, "std": 2.0, "n": 3}
    # mean 1.5; (0.25 + 0.25) / 1 = 0.5
    s = mean_std([1, 2])
    assert s["mean"] == 1.5 and s["std"] == pytest.approx(math.sqrt(0.5)) and s["n"] == 2


def test_mean_std_of_one_value_has_zero_std():
    assert mean_std([7.5]) == {"mean": 7.5, "std": 0.0, "n": 1}


def test_mean_std_ignores_nan_inf_and_none():
    assert mean_std([None, 3.0, float("nan"), 5.0, float("inf")]) == {
        "mean": 4.0,
        "std": pytest.approx(math.sqrt(2.0)),
        "n": 2,
    }


@pytest.mark.parametrize("values", [[], [None], [float("nan"), None]])
def test_mean_std_of_nothing(values):
    s = mean_std(values)
    assert s["n"] == 0 and math.isnan(s["mean"]) and math.isnan(s["std"])


# ---------------------------------------------------------------------------------------------
# hand-made runs


def _train_row(iteration, health=None):
    row = {"iteration": iteration, "total_loss": 2.0 - iteration / 10, "loss_cls": 0.5}
    row.update(health or {})
    return row


def _eval_row(iteration, ap, segm=None):
    row = {"iteration": iteration, "bbox/AP": ap, "bbox/AP50": ap + 20, "bbox/AP75": ap - 5}
    row["bbox/APl"] = float("nan")  # as COCOeval logs an area range without objects
    if segm is not None:
        row["segm/AP"] = segm
    return row


def _health(gate0, gate1, ratio):
    return {
        "distill/tsm_gate0_p2": gate0,
        "distill/tsm_gate1_p2": gate1,
        "distill/tsm_rms_ratio_p2": ratio,
        "distill/loss_shared_kd": 0.3,  # a distill/ scalar that is not a health one
    }


def _write_metrics(folder, rows):
    os.makedirs(folder, exist_ok=True)
    with open(os.path.join(folder, "metrics.json"), "w") as f:
        for r in rows:
            f.write(json.dumps(r) + "\n")  # NaN as detectron2's JSONWriter writes it


def _spec(seeds=(1, 2, 3)):
    return StudySpec(
        name="hand",
        seeds=list(seeds),
        guides=[{"name": "teacher", "config": TEACHER_CFG}],
        arms=[
            {"name": "student alone", "config": STUDENT_CFG},
            {
                "name": "Shared-KD",
                "config": SKD_CFG,
                "opts": ["MODEL.DISTILL.TEACHER.WEIGHTS", "{teacher}/model_final.pth"],
            },
        ],
    )


# Final box AP per (arm, seed), and the AP of the evaluation at iteration 1.
# "student alone" seed 3 never finished (no metrics.json at all).
FINAL = {("student alone", 1): 20.0, ("student alone", 2): 23.0}
FINAL.update({("Shared-KD", 1): 25.0, ("Shared-KD", 2): 27.0, ("Shared-KD", 3): 30.0})
FIRST = {("student alone", 1): 10.0, ("student alone", 2): 12.0}
FIRST.update({("Shared-KD", 1): 11.0, ("Shared-KD", 2): 13.0, ("Shared-KD", 3): 14.0})
# The Shared-KD runs' last health values (gate0, gate1, rms ratio) per seed.
HEALTH = {1: (0.4, 0.6, 0.8), 2: (0.5, 0.5, 0.9), 3: (0.3, 0.7, 1.0)}


@pytest.fixture
def study(tmp_path):
    """Hand-made metrics.json files in the folders the spec's runs name."""
    spec, out = _spec(), str(tmp_path / "hand")
    for run in spec.arm_runs(out):
        key = (run.arm, run.seed)
        if key not in FINAL:
            continue
        health = {}
        if run.arm == "Shared-KD":
            # an earlier (different) health row, then the last one: read_curve keeps the last
            early = _health(0.0, 1.0, 5.0)
            health = _health(*HEALTH[run.seed])
        else:
            early = {}
        rows = [
            _train_row(0, early),
            _train_row(1, early),
            _eval_row(1, FIRST[key]),
            _train_row(3, health),
            _eval_row(4, FINAL[key]),
        ]
        _write_metrics(run.stage.output_dir, rows)
    # a run still training (no evaluation yet) is not a finished seed either
    _write_metrics(os.path.join(out, "student_alone", "seed3"), [_train_row(0)])
    return spec, out


# ---------------------------------------------------------------------------------------------
# read_curve


def test_read_curve_iterations_metrics_and_last_health(tmp_path):
    rows = [
        _train_row(0, _health(0.1, 0.9, 2.0)),
        _eval_row(1, 10.0, segm=8.0),
        _train_row(3, _health(0.45, 0.55, 0.75)),
        {"iteration": 3, "distill/assistant1/tsm_gate0_p2": 0.2},  # a TA's health: not read
        _eval_row(4, 20.0, segm=9.5),
    ]
    _write_metrics(str(tmp_path), rows)
    curve = read_curve(str(tmp_path))
    assert curve["iterations"] == [2, 5]  # iterations trained: the logged index + 1
    assert curve["bbox/AP"] == [10.0, 20.0]
    assert curve["bbox/AP50"] == [30.0, 40.0]
    assert curve["bbox/AP75"] == [5.0, 15.0]
    assert curve["segm/AP"] == [8.0, 9.5]
    assert "bbox/APl" not in curve  # not one of the summarised metrics
    assert curve["health"] == {
        "distill/tsm_gate0_p2": 0.45,
        "distill/tsm_gate1_p2": 0.55,
        "distill/tsm_rms_ratio_p2": 0.75,
    }


def test_read_curve_without_segm_or_health(tmp_path):
    _write_metrics(str(tmp_path), [_train_row(0), _eval_row(1, 3.0)])
    curve = read_curve(str(tmp_path))
    assert curve == {
        "iterations": [2],
        "bbox/AP": [3.0],
        "bbox/AP50": [23.0],
        "bbox/AP75": [-2.0],
        "health": {},
    }


def test_read_curve_of_a_resumed_run_keeps_the_last_evaluation_of_each_iteration(tmp_path):
    # a first attempt evaluated at (logged) iterations 1 and 3 and was killed; resumed from its
    # checkpoint at iteration 1, the run appended to metrics.json, evaluating again at 3, then 5
    rows = [_eval_row(1, 10.0), _eval_row(3, 11.0), _train_row(3, _health(0.1, 0.9, 2.0))]
    rows += [_eval_row(3, 12.0), _train_row(4, _health(0.2, 0.8, 0.7)), _eval_row(5, 13.0)]
    _write_metrics(str(tmp_path), rows)
    curve = read_curve(str(tmp_path))
    assert curve["iterations"] == [2, 4, 6]
    assert curve["bbox/AP"] == [10.0, 12.0, 13.0]
    assert curve["health"]["distill/tsm_rms_ratio_p2"] == 0.7


def test_read_curve_counts_the_final_evaluation_as_max_iter(tmp_path):
    # detectron2 logs a periodic evaluation after iteration 2 at index 1, the final one (after
    # MAX_ITER = 4 iterations) at 4: both become iterations trained with the saved config
    (tmp_path / "config.yaml").write_text("SOLVER:\n  MAX_ITER: 4\n")
    _write_metrics(str(tmp_path), [_eval_row(1, 3.0), _train_row(3), _eval_row(4, 5.0)])
    assert read_curve(str(tmp_path))["iterations"] == [2, 4]


def test_read_curve_reads_the_length_of_a_lazyconfig_run(tmp_path):
    # a .py run's config.yaml is a LazyConfig (with Python tags, e.g. a ShapeSpec)
    (tmp_path / "config.yaml").write_text(
        "model:\n  _target_: detectron2.modeling.GeneralizedRCNN\n"
        "  shape: !!python/object/new:detectron2.layers.shape_spec.ShapeSpec [64, 7, 7, null]\n"
        "train:\n  max_iter: 4\n"
    )
    _write_metrics(str(tmp_path), [_eval_row(1, 3.0), _train_row(3), _eval_row(4, 5.0)])
    assert read_curve(str(tmp_path))["iterations"] == [2, 4]


def test_read_curve_of_a_missing_run(tmp_path):
    assert read_curve(str(tmp_path / "nope")) == {"iterations": [], "health": {}}


# ---------------------------------------------------------------------------------------------
# summarize_study


def test_summary_mean_std_per_arm(study):
    spec, out = study
    summary = summarize_study(spec, out)
    assert summary["study"] == "hand" and summary["seeds"] == [1, 2, 3]
    assert summary["reference"] == "student alone"
    alone, skd = summary["arms"]
    assert alone["name"] == "student alone" and skd["name"] == "Shared-KD"
    assert skd["config"] == SKD_CFG
    assert skd["opts"] == ["MODEL.DISTILL.TEACHER.WEIGHTS", "{teacher}/model_final.pth"]

    # student alone: seed 3 is missing (one run still training); finals 20, 23:
    # mean 21.5, sample variance (1.5^2 + 1.5^2) / 1 = 4.5
    assert alone["seeds_done"] == [1, 2]
    assert alone["per_seed"] == {
        "1": {"bbox/AP": 20.0, "bbox/AP50": 40.0, "bbox/AP75": 15.0},
        "2": {"bbox/AP": 23.0, "bbox/AP50": 43.0, "bbox/AP75": 18.0},
    }
    ap = alone["summary"]["bbox/AP"]
    assert ap["mean"] == 21.5 and ap["std"] == pytest.approx(math.sqrt(4.5)) and ap["n"] == 2
    assert alone["summary"]["bbox/AP50"]["mean"] == 41.5
    assert alone["summary"]["bbox/AP75"]["mean"] == 16.5
    assert "segm/AP" not in alone["summary"]  # no run logged masks

    # Shared-KD: finals 25, 27, 30: mean 82 / 3; deviations -7/3, -1/3, 8/3:
    # sample variance (49 + 1 + 64) / 9 / 2 = 19 / 3
    ap = skd["summary"]["bbox/AP"]
    assert skd["seeds_done"] == [1, 2, 3]
    assert ap["mean"] == pytest.approx(82 / 3) and ap["n"] == 3
    assert ap["std"] == pytest.approx(math.sqrt(19 / 3))


def test_summary_paired_delta_uses_seeds_both_arms_finished(study):
    spec, out = study
    alone, skd = summarize_study(spec, out)["arms"]
    assert alone["delta_ap_vs_reference"] is None  # the reference itself
    # seeds 1 and 2 only (the reference lacks seed 3): 25 - 20 = 5, 27 - 23 = 4
    delta = skd["delta_ap_vs_reference"]
    assert delta["n"] == 2 and delta["mean"] == 4.5
    assert delta["std"] == pytest.approx(math.sqrt(0.5))


def test_summary_pairs_an_arm_with_the_reference_it_names(study):
    # a third arm, paired with Shared-KD instead of the first arm; finals 26, 29, 30
    spec, out = study
    spec.arms.append({"name": "Shared-KD again", "config": SKD_CFG, "reference": "Shared-KD"})
    for run in spec.arm_runs(out):
        if run.arm == "Shared-KD again":
            final = {1: 26.0, 2: 29.0, 3: 30.0}[run.seed]
            _write_metrics(run.stage.output_dir, [_eval_row(4, final)])
    summary = summarize_study(spec, out)
    alone, skd, again = summary["arms"]
    assert summary["reference"] == "student alone"  # the table's default reference
    assert skd["reference"] == "student alone" and again["reference"] == "Shared-KD"
    # 26 - 25, 29 - 27, 30 - 30: all three seeds (Shared-KD has them all), mean 1, std 1
    delta = again["delta_ap_vs_reference"]
    assert delta["n"] == 3 and delta["mean"] == pytest.approx(1.0)
    assert delta["std"] == pytest.approx(1.0)
    row = next(r for r in study_markdown(summary).splitlines() if r.startswith("| Shared-KD again"))
    assert "| 1.0 +- 1.0 (vs Shared-KD) |" in row


def test_load_spec_rejects_an_unknown_reference(tmp_path):
    text = (
        f"arms:\n  - name: a\n    config: {STUDENT_CFG}\n"
        f"  - name: b\n    config: {STUDENT_CFG}\n    reference: student alone\n"
    )
    with pytest.raises(ValueError, match="arm 'b' names reference 'student alone'.*arms: "):
        load_study_spec(_write_spec(tmp_path, text))


def test_summary_mean_curve_per_iteration(study):
    spec, out = study
    alone, skd = summarize_study(spec, out)["arms"]
    assert list(skd["curve"]) == ["2", "5"]
    first = skd["curve"]["2"]
    assert first["values"] == [11.0, 13.0, 14.0] and first["n"] == 3
    assert first["mean"] == pytest.approx(38 / 3)
    # deviations -5/3, 1/3, 4/3: variance (25 + 1 + 16) / 9 / 2 = 7 / 3
    assert first["std"] == pytest.approx(math.sqrt(7 / 3))
    assert skd["curve"]["5"]["values"] == [25.0, 27.0, 30.0]
    assert alone["curve"]["2"]["values"] == [10.0, 12.0]
    assert alone["curve"]["5"] == {
        "mean": 21.5,
        "std": pytest.approx(math.sqrt(4.5)),
        "n": 2,
        "values": [20.0, 23.0],
    }


def test_summary_health_means_last_values_over_seeds(study):
    spec, out = study
    alone, skd = summarize_study(spec, out)["arms"]
    assert alone["health"] == {}
    assert skd["health"] == {
        "distill/tsm_gate0_p2": pytest.approx((0.4 + 0.5 + 0.3) / 3),
        "distill/tsm_gate1_p2": pytest.approx((0.6 + 0.5 + 0.7) / 3),
        "distill/tsm_rms_ratio_p2": pytest.approx((0.8 + 0.9 + 1.0) / 3),
    }


def test_summary_of_an_arm_with_nothing_finished(tmp_path):
    spec, out = _spec(seeds=[1]), str(tmp_path)
    only = spec.arm_runs(out)[1]  # Shared-KD, seed 1; the reference has not run at all
    _write_metrics(only.stage.output_dir, [_eval_row(4, 9.0)])
    alone, skd = summarize_study(spec, out)["arms"]
    assert alone["seeds_done"] == [] and alone["summary"] == {} and alone["curve"] == {}
    assert skd["seeds_done"] == [1] and skd["summary"]["bbox/AP"]["std"] == 0.0
    assert skd["delta_ap_vs_reference"]["n"] == 0  # nothing to pair with
    text = study_markdown(summarize_study(spec, out))
    assert "| student alone | - | - | - | - | - | - | - |" in text
    assert "| Shared-KD | 9.0 +- 0.0 | 29.0 +- 0.0 | 4.0 +- 0.0 | - | 1 | 9.0 | - |" in text


def test_summary_with_mask_ap(tmp_path):
    spec, out = _spec(seeds=[1]), str(tmp_path)
    for run, segm in zip(spec.arm_runs(out), (7.0, 8.0)):
        _write_metrics(run.stage.output_dir, [_eval_row(4, 10.0, segm=segm)])
    summary = summarize_study(spec, out)
    assert [a["summary"]["segm/AP"]["mean"] for a in summary["arms"]] == [7.0, 8.0]
    text = study_markdown(summary)
    assert "| mask AP |" in text
    assert "| Shared-KD | 10.0 +- 0.0 | 30.0 +- 0.0 | 5.0 +- 0.0 | 8.0 +- 0.0 |" in text


# ---------------------------------------------------------------------------------------------
# study_markdown, plot_study


def test_markdown_rows_by_hand_and_reproduce_command(study):
    spec, out = study
    command = "python tools/study.py configs/studies/hand.yaml --seeds 1 2 3"
    text = study_markdown(summarize_study(spec, out), command)
    lines = text.splitlines()
    header = next(line for line in lines if line.startswith("| config |"))
    assert header == (
        "| config | box AP | AP50 | AP75 | AP - student alone (paired) | seeds | per seed AP "
        "| TSM health |"
    )
    assert "mask AP" not in header
    # student alone: 21.5 +- sqrt(4.5) = 2.12; AP50 41.5, AP75 16.5 with the same std
    assert (
        "| student alone | 21.5 +- 2.1 | 41.5 +- 2.1 | 16.5 +- 2.1 | - | 1,2 | 20.0 / 23.0 | - |"
        in lines
    )
    # Shared-KD: 27.33 +- sqrt(19 / 3) = 2.52; delta 4.5 +- 0.71; health: smallest gate over
    # both inputs of the seed means (0.4, 0.6) and the ratio range (a single level: 0.9 - 0.9)
    skd = (
        "| Shared-KD | 27.3 +- 2.5 | 47.3 +- 2.5 | 22.3 +- 2.5 | 4.5 +- 0.7 | 1,2,3 "
        "| 25.0 / 27.0 / 30.0 | gate >= 0.40, RMS ratio 0.90-0.90 |"
    )
    assert skd in lines
    assert "seeds 1, 2, 3" in text and "Study `hand`" in text
    assert lines[-1] == f"Reproduce: `{command}`"
    assert "Reproduce" not in study_markdown(summarize_study(spec, out))


def _coloured_pixels(path):
    """Pixels that are not grey (text, axes and grid are): the curves and their bands."""
    with Image.open(path) as im:
        assert im.format == "PNG"
        return sum(1 for r, g, b in im.convert("RGB").getdata() if max(r, g, b) - min(r, g, b) > 40)


def test_plot_study_writes_a_png(study, tmp_path):
    spec, out = study
    path = str(tmp_path / "study.png")
    assert plot_study(summarize_study(spec, out), path) == path
    with Image.open(path) as im:
        assert im.width > 300 and im.height > 200
    assert _coloured_pixels(path) > 500


def test_plot_study_with_no_finished_run(tmp_path):
    path = str(tmp_path / "empty.png")
    plot_study(summarize_study(_spec(), str(tmp_path / "nothing")), path)
    assert os.path.getsize(path) > 0
    assert _coloured_pixels(path) == 0  # axes only: no curve


# ---------------------------------------------------------------------------------------------
# specs: runs, substitution, checks


def test_slug():
    assert slug("Shared-KD") == "shared_kd"
    assert slug("student alone") == "student_alone"
    assert slug("  R18 -> R50 (x2)!") == "r18_r50_x2"
    assert slug("ABC123") == "abc123"


def _write_spec(tmp_path, text, name="my_study.yaml"):
    path = tmp_path / name
    path.write_text(text)
    return str(path)


FULL = """
name: s
seeds: [3, 1]
common_opts: [TEST.EVAL_PERIOD, 100]
guides:
  - name: teacher
    config: {teacher}
    opts: [OUT_NOTE, "{{out}}/note"]
  - name: Teaching Assistant
    config: {student}
    opts: [MODEL.WEIGHTS, "{{teacher}}/model_final.pth"]
arms:
  - name: student alone
    config: {student}
  - name: Shared-KD
    config: {skd}
    opts: [MODEL.DISTILL.TEACHER.WEIGHTS, "{{teacher}}/model_final.pth", SOLVER.BASE_LR, 0.01]
""".format(teacher=TEACHER_CFG, student=STUDENT_CFG, skd=SKD_CFG)


def test_load_spec_and_guide_runs(tmp_path):
    spec = load_study_spec(_write_spec(tmp_path, FULL))
    assert spec.name == "s" and spec.seeds == [3, 1]
    assert spec.common_opts == ["TEST.EVAL_PERIOD", "100"]
    teacher, ta = spec.guide_runs("/o/s")
    assert teacher.arm == "teacher" and teacher.seed is None
    assert teacher.stage.name == "teacher" and teacher.stage.config_file == TEACHER_CFG
    assert teacher.stage.output_dir == os.path.join("/o/s", "teacher")
    assert list(teacher.stage.opts) == ["OUT_NOTE", "/o/s/note"]  # {out}: the study's folder
    assert teacher.stage.done_file == TIME_FILE
    # a later guide names an earlier one's folder; guides get no seed and no common opts
    assert ta.stage.output_dir == os.path.join("/o/s", "teaching_assistant")
    assert list(ta.stage.opts) == [
        "MODEL.WEIGHTS",
        os.path.join("/o/s", "teacher") + "/model_final.pth",
    ]


def test_arm_runs_seed_major_with_substitution_and_seed(tmp_path):
    spec = load_study_spec(_write_spec(tmp_path, FULL))
    runs = spec.arm_runs("/o/s")
    assert [(r.arm, r.seed) for r in runs] == [
        ("student alone", 3),
        ("Shared-KD", 3),
        ("student alone", 1),
        ("Shared-KD", 1),
    ]
    alone3, skd3, _, skd1 = runs
    assert alone3.stage.name == "student alone (seed 3)"
    assert alone3.stage.config_file == STUDENT_CFG
    assert alone3.stage.output_dir == os.path.join("/o/s", "student_alone", "seed3")
    assert list(alone3.stage.opts) == ["TEST.EVAL_PERIOD", "100", "SEED", "3"]
    teacher_weights = os.path.join("/o/s", "teacher") + "/model_final.pth"
    # the arm's opts (numbers as strings), then the common ones, then the seed
    assert list(skd1.stage.opts) == [
        "MODEL.DISTILL.TEACHER.WEIGHTS",
        teacher_weights,
        "SOLVER.BASE_LR",
        "0.01",
        "TEST.EVAL_PERIOD",
        "100",
        "SEED",
        "1",
    ]
    assert skd3.stage.output_dir == os.path.join("/o/s", "shared_kd", "seed3")
    assert all(r.stage.done_file == TIME_FILE for r in runs)
    # the command train_net.py gets: the opts, then this run's own folder
    cmd = skd1.stage.command()
    assert cmd[-2:] == ["OUTPUT_DIR", os.path.join("/o/s", "shared_kd", "seed1")]
    assert cmd[cmd.index("SEED") + 1] == "1" and "--resume" in cmd
    # other seeds than the file's (more seeds to extend a study)
    assert [(r.arm, r.seed) for r in spec.arm_runs("/o/s", seeds=[7])] == [
        ("student alone", 7),
        ("Shared-KD", 7),
    ]
    # the spec itself is not changed by building runs
    assert spec.arms[1]["opts"][1] == "{teacher}/model_final.pth"


def test_load_spec_defaults(tmp_path):
    path = _write_spec(tmp_path, f"arms:\n  - name: a\n    config: {STUDENT_CFG}\n", "rd.yaml")
    spec = load_study_spec(path)
    assert spec.name == "rd"  # the file's name
    assert spec.seeds == [1, 2, 3] and spec.guides == [] and spec.common_opts == []
    assert spec.guide_runs("/o") == []
    assert [r.stage.output_dir for r in spec.arm_runs("/o")] == [
        os.path.join("/o", "a", f"seed{s}") for s in (1, 2, 3)
    ]


@pytest.mark.parametrize(
    "text",
    [
        "name: x\nseeds: [1]\n",  # no arms
        "arms: []\n",
        "- just a list\n",
        "",
    ],
)
def test_load_spec_needs_arms(tmp_path, text):
    with pytest.raises(ValueError, match="non-empty 'arms'"):
        load_study_spec(_write_spec(tmp_path, text))


@pytest.mark.parametrize(
    "arms, guides",
    [
        (["a", "a"], []),
        (["Shared-KD", "shared kd"], []),  # the same folder
        (["teacher"], ["teacher"]),  # an arm named like a guide
        (["a"], ["t", "T"]),
        (["a", None], []),  # no name
    ],
)
def test_load_spec_needs_distinct_names(tmp_path, arms, guides):
    def entries(names):
        return "".join(
            (f"  - name: {n}\n" if n else "  - seeds: 1\n") + f"    config: {STUDENT_CFG}\n"
            for n in names
        )

    text = "arms:\n" + entries(arms) + ("guides:\n" + entries(guides) if guides else "")
    with pytest.raises(ValueError, match="distinct name"):
        load_study_spec(_write_spec(tmp_path, text))


@pytest.mark.parametrize(
    "text",
    [
        f"arms:\n  - name: x\n    opts: [SEED, 1]\n  - name: b\n    config: {STUDENT_CFG}\n",
        f"arms:\n  - name: a\n    config: {STUDENT_CFG}\nguides:\n  - name: x\n    config: ''\n",
    ],
)
def test_load_spec_needs_configs(tmp_path, text):
    with pytest.raises(ValueError, match="'x' has no 'config'"):
        load_study_spec(_write_spec(tmp_path, text))


def test_a_guide_folder_is_shared_between_studies(tmp_path):
    spec_file = tmp_path / "s.yaml"
    spec_file.write_text(
        "name: mkd\nguides:\n"
        "  - {name: teacher, config: t.yaml, folder: teachers/frcnn}\n"
        "  - {name: ta, config: ta.yaml, opts: [W, '{teacher}/model_final.pth']}\n"
        "arms:\n  - {name: a, config: a.yaml, opts: [W, '{teacher}/model_final.pth']}\n"
    )
    spec = load_study_spec(str(spec_file))
    out = os.path.join("root", "mkd")
    teacher, ta = spec.guide_runs(out)
    assert teacher.stage.output_dir == os.path.join("root", "teachers/frcnn")
    assert ta.stage.output_dir == os.path.join("root", "mkd", "ta")
    assert ta.stage.opts == ["W", os.path.join("root", "teachers/frcnn") + "/model_final.pth"]
    (arm,) = spec.arm_runs(out, seeds=[1])
    assert arm.stage.opts[:2] == ["W", os.path.join("root", "teachers/frcnn") + "/model_final.pth"]
