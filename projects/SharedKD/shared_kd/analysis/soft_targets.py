"""
What an R-CNN teacher's soft targets carry beyond the hard labels, per temperature: on the
proposals its box head is trained on (its own RPN's, labelled and sampled as in training), the
probability on each proposal's label, the mass off the top class and the entropy of
``softmax(z / T)``. Near-uniform targets (entropy close to ``log(K + 1)``) teach mostly
uncertainty; that reading chose M-KD's ``KD.T_START`` (docs/METHODS.md, "M-KD measured").
"""

import math
from typing import Dict, Iterable, List, Sequence

import torch
from detectron2.data import DatasetCatalog, DatasetMapper
from detectron2.modeling import GeneralizedRCNN
from detectron2.utils.events import EventStorage

from ..detector_config import DetectorConfig
from ..modeling.logits import rcnn_box_logits

__all__ = ["rcnn_soft_target_stats", "labelled_test_inputs"]


def labelled_test_inputs(config: DetectorConfig, dataset: str, num_images: int) -> List[dict]:
    """The first ``num_images`` of ``dataset`` as the detector's test mapper resizes them, with
    their ground truth kept (``instances``), in order: the same images every call."""
    test = config.test_mapper()
    mapper = DatasetMapper(
        is_train=True, augmentations=list(test.augmentations.augs), image_format=test.image_format
    )
    return [mapper(d) for d in DatasetCatalog.get(dataset)[:num_images]]


@torch.no_grad()
def rcnn_soft_target_stats(
    model: GeneralizedRCNN,
    inputs: Iterable[dict],
    temperatures: Sequence[float] = (1.0, 2.0, 5.0),
    batch_size: int = 4,
) -> Dict[str, object]:
    """
    Args:
        model: a trained R-CNN (eval mode); its RPN proposes at test-time settings, its ROI
            heads label and sample the proposals as in training (``label_and_sample_proposals``).
        inputs: mapped images with ``instances`` (:func:`labelled_test_inputs`).
        temperatures: the T of ``softmax(z / T)`` to report.

    Returns:
        dict: ``proposals`` (R, the sampled boxes), ``foreground`` (their share with an object
        label), ``top1_is_label`` (share where the teacher's top class is the label),
        ``max_entropy`` (``log(K + 1)``), and ``by_temperature``: T -> ``label_mass`` (mean
        probability on the label), ``off_top_mass`` (mean ``1 - max p``), ``entropy`` (mean,
        nats), each a mean over the R proposals.
    """
    if not isinstance(model, GeneralizedRCNN):
        raise ValueError(f"Soft-target statistics need an R-CNN, not {type(model).__name__}")
    heads = model.roi_heads
    inputs = list(inputs)
    logits, labels = [], []
    with EventStorage(0):  # the sampler logs its foreground counts
        for start in range(0, len(inputs), batch_size):
            batch = inputs[start : start + batch_size]
            images = model.preprocess_image(batch)
            features = model.backbone(images.tensor)
            proposals, _ = model.proposal_generator(images, features, None)
            gt = [x["instances"].to(model.device) for x in batch]
            sampled = heads.label_and_sample_proposals(proposals, gt)
            boxes = [p.proposal_boxes for p in sampled]
            logits.append(rcnn_box_logits(heads, features, boxes).float())  # R x (K + 1)
            labels.append(torch.cat([p.gt_classes for p in sampled]))
    z, y = torch.cat(logits), torch.cat(labels)
    stats = {
        "proposals": len(y),
        "foreground": (y < heads.num_classes).float().mean().item(),
        "top1_is_label": (z.argmax(1) == y).float().mean().item(),
        "max_entropy": math.log(z.shape[1]),
        "by_temperature": {},
    }
    for t in temperatures:
        p = (z / t).softmax(1)
        stats["by_temperature"][float(t)] = {
            "label_mass": p.gather(1, y[:, None]).mean().item(),
            "off_top_mass": (1 - p.max(1).values).mean().item(),
            "entropy": -(p * p.clamp_min(1e-12).log()).sum(1).mean().item(),
        }
    return stats
