"""shared_kd.data.sampler: a training stream that a resumed run continues where it left off."""

import itertools

import torch
from torch.utils.data import DataLoader

from shared_kd.data.sampler import ResumableLoader, ResumableSampler, give_own_generator


def _first(iterable, n):
    return list(itertools.islice(iter(iterable), n))


def test_the_sampler_starts_after_the_first_indices():
    sampler = ResumableSampler(range(10))
    assert list(sampler) == list(range(10))
    sampler.start = 7
    assert list(sampler) == [7, 8, 9]
    sampler.start = 12  # past the end of a finite stream: nothing
    assert list(sampler) == []


class _InfiniteSampler:
    """0, 1, 2, ... anew on every iter(), as detectron2's TrainingSampler (seeded) gives."""

    def __iter__(self):
        return itertools.count()


def test_start_at_skips_the_images_of_earlier_iterations():
    sampler = ResumableSampler(_InfiniteSampler())
    images = [f"img{i}" for i in range(100)]
    batches = DataLoader(images, sampler=sampler, batch_size=3, collate_fn=list)
    loader = ResumableLoader(batches, sampler, images_per_iter=3)
    assert _first(loader, 2) == [["img0", "img1", "img2"], ["img3", "img4", "img5"]]
    loader.start_at(4)  # an uninterrupted run's 5th batch: images 12, 13, 14
    assert sampler.start == 12
    assert _first(loader, 2) == [["img12", "img13", "img14"], ["img15", "img16", "img17"]]


def test_the_loader_passes_other_attributes_through():
    batches = DataLoader(list(range(6)), batch_size=2)
    loader = ResumableLoader(batches, ResumableSampler(range(6)), images_per_iter=2)
    assert loader.batch_size == 2 and loader.dataset == list(range(6))
    assert loader.images_per_iter == 2 and loader.loader is batches


class _Wrapper:
    """A dataset that wraps another, as detectron2's AspectRatioGroupedDataset does."""

    def __init__(self, dataset):
        self.dataset = dataset


def test_the_nested_dataloader_gets_its_own_seeded_generator():
    inner = DataLoader(list(range(4)))
    assert inner.generator is None  # by default: torch's global generator
    torch.manual_seed(3)
    assert give_own_generator(_Wrapper(_Wrapper(inner))) is True
    torch.manual_seed(3)
    seed = int(torch.randint(2**62, (1,)))  # the one draw it took
    assert inner.generator.initial_seed() == seed
    assert inner.generator is not torch.default_generator


def test_no_dataloader_found():
    assert give_own_generator([1, 2, 3]) is False
    too_deep = _Wrapper(_Wrapper(_Wrapper(_Wrapper(DataLoader([1])))))  # 4 levels are searched
    assert give_own_generator(too_deep) is False
