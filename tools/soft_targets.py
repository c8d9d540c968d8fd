#!/usr/bin/env python
"""
What an R-CNN teacher's soft targets carry beyond the hard labels, per temperature.

    python tools/soft_targets.py --config-file T.yaml --weights T.pth \\
        [--dataset shapes_val] [--num-images 100] [--temperatures 1 2 5] [--device cpu]

Prints, over the proposals its box head is trained on (its own RPN's, labelled and sampled as
in training), the mean probability on the label, the mass off the top class and the entropy
of softmax(z / T), beside log(K + 1). See ``shared_kd/analysis/soft_targets.py``.
"""

import argparse
import json

import torch

from shared_kd.analysis.common import load_detector
from shared_kd.analysis.soft_targets import labelled_test_inputs, rcnn_soft_target_stats


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.strip().split("\n")[0])
    parser.add_argument("--config-file", required=True, help="the teacher's config")
    parser.add_argument("--weights", required=True, help="the teacher's checkpoint")
    parser.add_argument("--dataset", help="default: the config's first test dataset")
    parser.add_argument("--num-images", type=int, default=100)
    parser.add_argument("--temperatures", type=float, nargs="+", default=[1.0, 2.0, 5.0])
    parser.add_argument("--device", default=None)
    args = parser.parse_args(argv)
    torch.manual_seed(0)  # the ROI sampler draws its proposals at random
    model, config = load_detector(args.config_file, args.weights, device=args.device)
    dataset = args.dataset or config.test_datasets[0]
    inputs = labelled_test_inputs(config, dataset, args.num_images)
    stats = rcnn_soft_target_stats(model, inputs, args.temperatures)
    print(
        f"{dataset}, {args.num_images} images: {stats['proposals']} sampled proposals, "
        f"{stats['foreground']:.1%} foreground; the top class is the label for "
        f"{stats['top1_is_label']:.1%}; entropy at most {stats['max_entropy']:.2f} nats"
    )
    print("| T | mass on the label | mass off the top class | entropy (nats) |")
    print("|---|---|---|---|")
    for t, s in stats["by_temperature"].items():
        print(f"| {t:g} | {s['label_mass']:.3f} | {s['off_top_mass']:.3f} | {s['entropy']:.3f} |")
    print(json.dumps(stats))
    return stats


if __name__ == "__main__":
    main()
