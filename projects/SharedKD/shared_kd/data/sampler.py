"""A training data stream that a resumed run continues where the checkpoint left it."""

import itertools

import torch
from torch.utils.data import DataLoader, Sampler

__all__ = ["ResumableLoader", "ResumableSampler", "give_own_generator"]


class ResumableSampler(Sampler):
    """
    Wraps a training sampler (detectron2's are infinite, seeded and sharded per process) so
    that iteration can begin after the first ``start`` indices of its stream.

    Skipping walks the index stream without loading any image: for a COCO schedule it is a
    few hundred thousand integers per process.
    """

    def __init__(self, sampler):
        self.sampler = sampler
        self.start = 0

    def __iter__(self):
        return itertools.islice(iter(self.sampler), self.start, None)


class ResumableLoader:
    """
    detectron2's training loader with :meth:`start_at`: the next ``iter()`` yields the batches
    an uninterrupted run would have seen from that iteration on.

    The restored stream is exact when the batches are cut from the index stream alone: no
    aspect-ratio bucket holding a partial batch at the checkpoint (e.g. all images of one
    orientation, or ``DATALOADER.ASPECT_RATIO_GROUPING False``). Any other attribute is the
    wrapped loader's.
    """

    def __init__(self, loader, sampler: ResumableSampler, images_per_iter: int):
        """
        Args:
            loader: the iterable of batches built over ``sampler``.
            sampler: the loader's sampler, wrapped.
            images_per_iter: images this process takes per iteration.
        """
        self.loader = loader
        self.sampler = sampler
        self.images_per_iter = images_per_iter

    def start_at(self, iteration: int) -> None:
        self.sampler.start = iteration * self.images_per_iter

    def __iter__(self):
        return iter(self.loader)

    def __getattr__(self, name):
        return getattr(self.__dict__["loader"], name)


def give_own_generator(loader) -> bool:
    """
    Give the ``torch.utils.data.DataLoader`` inside detectron2's ``loader`` a generator of its
    own, seeded from one draw of torch's global generator.

    Each ``iter(DataLoader)`` draws its workers' base seed from that generator; by default it is
    the global one, and a resumed run creates its iterator at a later iteration than the
    uninterrupted run did, which would shift every later random draw (proposal sampling, ...).

    Returns:
        bool: whether a DataLoader was found (detectron2 nests it in ``.dataset`` attributes).
    """
    inner = loader
    for _ in range(4):
        if isinstance(inner, DataLoader):
            seed = int(torch.randint(2**62, (1,)))
            inner.generator = torch.Generator().manual_seed(seed)
            return True
        inner = getattr(inner, "dataset", None)
    return False
