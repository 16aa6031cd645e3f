"""BadImageLog: each bad file logged once with its image id and a running count; training stops
past both thresholds (more than TOLERATED_FILES files and more than MAX_FRACTION of the reads),
listing the files, with the account left as before the batch; the state survives a checkpoint."""

import unittest

from tensormask_proj.config import get_project_cfg
from tensormask_proj.data.bad_images import BadImageLog, BadImagesError, UnreadableImage

LOGGER = "tensormask_proj.data.bad_images"


def _bad(i):
    return UnreadableImage(f"/data/img{i}.jpg", i, "OSError: image file is truncated")


class TestBadImageLog(unittest.TestCase):
    def test_config_defaults(self):
        bad = get_project_cfg().DATALOADER.BAD_IMAGES
        self.assertEqual((bad.MAX_FRACTION, bad.TOLERATED_FILES), (0.01, 10))

    def test_each_file_logged_once_with_a_running_count(self):
        log = BadImageLog(max_fraction=0.5, tolerated_files=5, dataset_name="mine_train")
        with self.assertLogs(LOGGER, "WARNING") as logs:
            log.add(4, [_bad(1)])
            log.add(4, [_bad(1), _bad(2)])  # img1 again: counted as a read, not logged
            log.add(4, [])
        self.assertEqual(len(logs.output), 2)
        first = "of mine_train: /data/img1.jpg (image_id 1): OSError: image file is truncated"
        self.assertIn(first, logs.output[0])
        self.assertIn("Unreadable so far: 1 files, 1 of 4 reads", logs.output[0])
        self.assertIn("/data/img2.jpg (image_id 2)", logs.output[1])
        self.assertIn("Unreadable so far: 2 files, 3 of 8 reads", logs.output[1])
        self.assertEqual((log.reads, log.failed_reads), (12, 3))

    def test_one_bad_file_of_a_tiny_dataset_never_stops(self):
        # Drawn in every batch of 2 (half the reads fail), but only 1 file <= TOLERATED_FILES.
        log = BadImageLog(max_fraction=0.01, tolerated_files=1)
        with self.assertLogs(LOGGER, "WARNING"):
            for _ in range(100):
                log.add(3, [_bad(1)])
        self.assertEqual(len(log.files), 1)

    def test_few_bad_files_of_a_large_dataset_never_stop(self):
        # 3 files > TOLERATED_FILES 2, but 3 failed reads of 1000 <= 1%.
        log = BadImageLog(max_fraction=0.01, tolerated_files=2)
        with self.assertLogs(LOGGER, "WARNING"):
            log.add(997, [])
            log.add(3, [_bad(1), _bad(2), _bad(3)])

    def test_stops_past_both_thresholds_listing_the_files(self):
        log = BadImageLog(max_fraction=0.1, tolerated_files=2, dataset_name="mine_train")
        with self.assertLogs(LOGGER, "WARNING"):
            log.add(10, [_bad(1), _bad(2)])  # 2 files: tolerated
        before = log.state_dict()
        with self.assertRaises(BadImagesError) as raised:
            log.add(2, [_bad(3)])  # 3 files, 3 of 12 reads > 10%
        message = str(raised.exception)
        self.assertIn("3 of 12 image reads failed (3 files)", message)
        self.assertIn("MAX_FRACTION 0.1, TOLERATED_FILES 2", message)
        for i in (1, 2, 3):
            self.assertIn(f"/data/img{i}.jpg (image_id {i}): OSError", message)
        self.assertIn("--resume", message)
        # Not accounted: a run resumed before this batch stops at it again.
        self.assertEqual(log.state_dict(), before)

    def test_zero_thresholds_stop_at_the_first_bad_file(self):
        log = BadImageLog(max_fraction=0.0, tolerated_files=0)
        log.add(100, [])
        with self.assertRaisesRegex(BadImagesError, "img7.jpg"):
            log.add(2, [_bad(7)])

    def test_state_round_trip(self):
        log = BadImageLog(max_fraction=0.5, tolerated_files=5)
        with self.assertLogs(LOGGER, "WARNING"):
            log.add(6, [_bad(1), _bad(2)])
        restored = BadImageLog(max_fraction=0.5, tolerated_files=5)
        restored.load_state_dict(log.state_dict())
        self.assertEqual((restored.reads, restored.failed_reads), (6, 2))
        self.assertEqual(restored.files, log.files)
        with self.assertNoLogs(LOGGER, "WARNING"):  # img1 was logged before the checkpoint
            restored.add(2, [_bad(1)])

    def test_bad_thresholds(self):
        with self.assertRaisesRegex(ValueError, "MAX_FRACTION must be in"):
            BadImageLog(max_fraction=1.5, tolerated_files=0)
        with self.assertRaisesRegex(ValueError, "TOLERATED_FILES must be >= 0"):
            BadImageLog(max_fraction=0.1, tolerated_files=-1)


if __name__ == "__main__":
    unittest.main()
