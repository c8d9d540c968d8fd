"""shared_kd.layers.outputs: what a detector hands the distillation losses in one step."""

import torch

from shared_kd.layers.outputs import DetectorOutputs


def test_defaults():
    features = {"p2": torch.zeros(1, 2, 4, 4)}
    out = DetectorOutputs(features)
    assert out.features is features
    assert out.class_logits is None and out.gt_boxes is None and out.input_size is None
    assert out.logit_activation == "softmax" and out.cache == {}
    assert DetectorOutputs({}).cache is not out.cache  # a memo per instance


def test_cached_computes_once_per_key():
    calls = []

    def compute(value):
        def run():
            calls.append(value)
            return torch.tensor(value)

        return run

    out = DetectorOutputs({})
    first = out.cached("a", compute(1.0))
    assert out.cached("a", compute(2.0)) is first  # the first result, not recomputed
    assert float(first) == 1.0 and calls == [1.0]
    assert float(out.cached("b", compute(3.0))) == 3.0 and calls == [1.0, 3.0]
    assert set(out.cache) == {"a", "b"}
    # the next step's outputs compute again
    assert float(DetectorOutputs({}).cached("a", compute(4.0))) == 4.0 and calls[-1] == 4.0
