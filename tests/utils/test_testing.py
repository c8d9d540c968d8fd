import pytest
import torch
from detectron2.modeling import build_model
from detectron2.utils.events import EventStorage

from shared_kd.utils.testing import TINY_FAMILIES, get_tiny_cfg, random_batch


@pytest.mark.parametrize("family", TINY_FAMILIES)
def test_tiny_detector_trains_and_predicts(family):
    torch.manual_seed(0)
    cfg = get_tiny_cfg(family)
    model = build_model(cfg)
    batch = random_batch(2, with_masks=family == "mask_rcnn")
    with EventStorage():
        losses = model(batch)
    assert losses and all(torch.isfinite(v) for v in losses.values())
    assert ("loss_mask" in losses) == (family == "mask_rcnn")
    sum(losses.values()).backward()
    grads = [p.grad for p in model.parameters() if p.requires_grad]
    assert any(g is not None and g.abs().sum() > 0 for g in grads)

    model.eval()
    with torch.no_grad():
        out = model([{"image": b["image"], "height": 64, "width": 64} for b in batch])
    assert len(out) == 2 and out[0]["instances"].image_size == (64, 64)


def test_random_batch_is_seeded():
    a, b = random_batch(seed=3), random_batch(seed=3)
    assert torch.equal(a[1]["image"], b[1]["image"])
    assert torch.equal(a[1]["instances"].gt_boxes.tensor, b[1]["instances"].gt_boxes.tensor)
    with pytest.raises(ValueError, match="Unknown tiny family"):
        get_tiny_cfg("yolo")
