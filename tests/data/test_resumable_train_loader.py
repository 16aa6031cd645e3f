"""
ResumableTrainLoader, without a model or image files (a mapper over plain dicts):

* its batches are detectron2's: the same TrainingSampler stream grouped by aspect ratio as
  ``build_batch_data_loader(..., aspect_ratio_grouping=True)`` groups it (second implementation);
* resumed at batch k (from ``state_dict``), it yields what an uninterrupted loader yields from
  batch k: the same images and the same random draws of the mapper, with or without workers;
* the mapper's random draws do not move the training process's own random stream;
* an unreadable image is replaced by one of the same aspect-ratio group, the same in every run,
  reported once; a sample none of whose replacements can be read stops with the files listed.
"""

import itertools
import logging
import random
import unittest

import numpy as np
import torch
from detectron2.data.build import build_batch_data_loader
from detectron2.data.common import DatasetFromList, MapDataset
from detectron2.data.samplers import TrainingSampler

from tensormask_proj.data.bad_images import BadImageLog, BadImagesError
from tensormask_proj.data.resumable_train_loader import (
    MAX_ATTEMPTS,
    IndexBatches,
    ResumableTrainLoader,
    aspect_ratio_groups,
)
from tensormask_proj.engine import DatasetMappingError, UnreadableImageError

SEED = 7


def _dicts(n=13):
    # Irregular landscape/portrait pattern, so that the two buckets fill at different rates.
    portrait = {1, 2, 5, 9, 10, 12}
    sizes = {True: (60, 40), False: (40, 60)}  # (height, width)
    return [
        {"image_id": 100 + i, "file_name": f"img{i}.jpg", "height": h, "width": w}
        for i, (h, w) in ((i, sizes[i in portrait]) for i in range(n))
    ]


class RandomMapper:
    """Returns the image id and draws from the three generators detectron2's mappers use;
    ``unreadable``: image ids that raise UnreadableImageError."""

    def __init__(self, unreadable=()):
        self.unreadable = set(unreadable)

    def __call__(self, d):
        if d["image_id"] in self.unreadable:
            raise UnreadableImageError(
                f"cannot read {d['file_name']}", d["file_name"], d["image_id"], "OSError: truncated"
            )
        return {
            "image_id": d["image_id"],
            "draws": (np.random.rand(), random.random(), torch.rand(1).item()),
        }


def _loader(dicts=None, mapper=None, num_workers=0, bad_images=None):
    return ResumableTrainLoader(
        dicts or _dicts(),
        mapper or RandomMapper(),
        lambda seed: TrainingSampler(len(dicts or _dicts()), seed=seed),
        batch_size=2,
        seed=SEED,
        num_workers=num_workers,
        bad_images=bad_images,
    )


def _take(loader, n):
    return list(itertools.islice(iter(loader), n))


class TestIndexBatches(unittest.TestCase):
    def test_same_batches_as_detectron2(self):
        dicts = _dicts()
        # detectron2's train loader over the same dicts, a mapper that keeps the dict.
        d2_loader = build_batch_data_loader(
            MapDataset(DatasetFromList(dicts, copy=False), lambda d: d),
            TrainingSampler(len(dicts), seed=SEED),
            3,
            aspect_ratio_grouping=True,
        )
        expected = [[d["image_id"] - 100 for d in b] for b in itertools.islice(d2_loader, 20)]
        ours = IndexBatches(TrainingSampler(len(dicts), seed=SEED), aspect_ratio_groups(dicts), 3)
        got = [[index for _, index in b] for b in itertools.islice(ours, 20)]
        self.assertEqual(got, expected)
        self.assertTrue(any(len({dicts[i]["height"] for i in b}) == 1 for b in got))

    def test_positions_and_start(self):
        groups = aspect_ratio_groups(_dicts())
        full = list(itertools.islice(IndexBatches(TrainingSampler(13, seed=1), groups, 2), 12))
        resumed = IndexBatches(TrainingSampler(13, seed=1), groups, 2, start=5)
        self.assertEqual(list(itertools.islice(resumed, 7)), full[5:])
        positions = [p for batch in full for p, _ in batch]
        self.assertEqual(len(set(positions)), len(positions))  # each sample its own position

    def test_positions_of_another_rank_are_global(self):
        # Rank 1 of 2 samples every other index of the global stream, as TrainingSampler does
        # in a 2-process run; each sample's position is its place in the global stream.
        global_stream = list(itertools.islice(TrainingSampler(13, seed=1)._infinite_indices(), 60))
        rank1_sampler = itertools.islice(global_stream, 1, None, 2)
        rank1 = IndexBatches(rank1_sampler, [0] * 13, 2, rank=1, world_size=2)
        samples = [s for batch in itertools.islice(rank1, 10) for s in batch]
        self.assertEqual([p for p, _ in samples], list(range(1, 40, 2)))
        for position, index in samples:
            self.assertEqual(index, global_stream[position])


class TestResumableTrainLoader(unittest.TestCase):
    def test_batches_are_grouped_and_deterministic(self):
        first, second = _take(_loader(), 8), _take(_loader(), 8)
        self.assertEqual(first, second)
        groups = aspect_ratio_groups(_dicts())
        for batch in first:
            self.assertEqual(len({groups[d["image_id"] - 100] for d in batch}), 1)
        draws = [d["draws"] for batch in first for d in batch]
        self.assertEqual(len(set(draws)), len(draws))  # each sample has its own random draws

    def test_resume_continues_exactly_with_and_without_workers(self):
        uninterrupted = _take(_loader(), 9)
        interrupted = _loader()
        _take(interrupted, 4)
        state = interrupted.state_dict(4)
        self.assertEqual((state["seed"], state["batches"]), (SEED, 4))
        for num_workers in (0, 2):
            with self.subTest(num_workers=num_workers):
                resumed = _loader(num_workers=num_workers)
                resumed.seed = 12345  # a fresh run's seed: the checkpoint's must win
                resumed.load_state_dict(state)
                self.assertEqual(resumed.state_dict(4), state)  # (before any batch, too)
                self.assertEqual(_take(resumed, 5), uninterrupted[4:])

    def test_mapping_leaves_the_training_process_random_stream_alone(self):
        def draw_twice(between=lambda: None):
            torch.manual_seed(3), np.random.seed(3), random.seed(3)
            first = (torch.rand(1).item(), np.random.rand(), random.random())
            between()
            return first, (torch.rand(1).item(), np.random.rand(), random.random())

        # Mapping in this process (no workers) between two draws changes neither.
        self.assertEqual(draw_twice(lambda: _take(_loader(), 3)), draw_twice())

    def test_state_of_the_previous_batch(self):
        loader = _loader(mapper=RandomMapper(unreadable={100, 101, 102, 103, 104, 105}))
        _take(loader, 3)
        now, before = loader.state_dict(3), loader.state_dict(2)
        self.assertEqual(before["batches"], 2)
        self.assertLessEqual(before["bad_images"]["reads"], now["bad_images"]["reads"] - 2)
        with self.assertRaisesRegex(ValueError, "known after 3 batches"):
            loader.state_dict(1)

    def test_changed_dataset_warns_that_resume_is_not_exact(self):
        loader = _loader()
        _take(loader, 2)
        state = loader.state_dict(2)
        smaller = _loader(dicts=_dicts(11))
        with self.assertLogs("tensormask_proj.data.resumable_train_loader", "WARNING") as logs:
            smaller.load_state_dict(state)
        self.assertIn("dataset_size 13 -> 11", logs.output[0])
        self.assertIn("not exact", logs.output[0])
        self.assertEqual(len(_take(smaller, 2)), 2)


class TestUnreadableImages(unittest.TestCase):
    BAD = {102, 107}  # portrait and landscape

    def test_replaced_by_the_same_group_the_same_way_in_every_run(self):
        log = BadImageLog(max_fraction=1.0, tolerated_files=100)
        with self.assertLogs("tensormask_proj.data.bad_images", "WARNING") as logs:
            batches = _take(_loader(mapper=RandomMapper(self.BAD), bad_images=log), 20)
        groups = aspect_ratio_groups(_dicts())
        for batch in batches:
            ids = [d["image_id"] for d in batch]
            self.assertEqual(len(batch), 2)
            self.assertFalse(self.BAD & set(ids))
            self.assertEqual(len({groups[i - 100] for i in ids}), 1)
        # Each bad file is logged once, though drawn about three times in 40 samples.
        self.assertEqual(sorted(log.files), ["img2.jpg", "img7.jpg"])
        self.assertEqual(len(logs.output), 2)
        self.assertGreater(log.failed_reads, 2)
        self.assertEqual(log.reads, 40 + log.failed_reads)
        for line in logs.output:
            self.assertRegex(line, r"img[27]\.jpg \(image_id 10[27]\): OSError: truncated")
        self.assertIn("Unreadable so far: 2 files", logs.output[1])
        # With two workers: the same replacements (chosen by position, not by history).
        again = _take(_loader(mapper=RandomMapper(self.BAD), num_workers=2, bad_images=None), 20)
        self.assertEqual(again, batches)

    def test_a_sample_with_no_readable_replacement_stops(self):
        everything = {d["image_id"] for d in _dicts()}
        log = BadImageLog(max_fraction=1.0, tolerated_files=100)
        with self.assertRaises(BadImagesError) as raised:
            _take(_loader(mapper=RandomMapper(everything), bad_images=log), 1)
        message = str(raised.exception)
        self.assertIn(f"none of {MAX_ATTEMPTS} images drawn in a row", message)
        self.assertRegex(message, r"img\d+\.jpg \(image_id 1\d\d\): OSError: truncated")

    def test_other_mapping_errors_still_stop_training(self):
        def mapper(d):  # e.g. a bad annotation: not the image's fault, never skipped
            raise DatasetMappingError(f"Preparing the inputs of image {d['file_name']} failed")

        with self.assertRaisesRegex(DatasetMappingError, r"image img\d+\.jpg failed"):
            _take(_loader(mapper=mapper), 1)


if __name__ == "__main__":
    logging.basicConfig()
    unittest.main()
