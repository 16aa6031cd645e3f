"""
Pasting mask windows of detections at the image border (issue 11): a window box wholly outside
the image, e.g. in the padding to the size divisibility, made detectron2's per-box CPU paste raise
"upper bound and lower bound inconsistent with step sign". Such a window now gives an empty mask;
windows that overlap the image are pasted exactly as detectron2 pastes them alone.
"""

import unittest

import torch
from detectron2.layers import paste_masks_in_image
from detectron2.structures import Boxes

from tensormask_proj.modeling.tensormask.postprocess import MaskWindows, paste_mask_windows

# Network input 100 x 120 (H x W), padded to 128 x 128 by the size divisibility; the output
# image is 50 x 60, so boxes are scaled by 0.5. Hand-placed window boxes (input coordinates):
INSIDE = [10.0, 10, 50, 50]
IN_RIGHT_PADDING = [124.0, 20, 127, 60]  # scaled x: 62..63.5, beyond the width 60
IN_BOTTOM_PADDING = [10.0, 104, 50, 127]  # scaled y: 52..63.5, beyond the height 50
LEFT_OF_IMAGE = [-40.0, 10, -4, 50]  # scaled x: -20..-2
ACROSS_RIGHT_EDGE = [110.0, 20, 130, 60]  # scaled x: 55..65, half inside
SCALE, OUT_SIZE = (0.5, 0.5), (50, 60)


def window(side: int, seed: int) -> torch.Tensor:
    return torch.randn(side, side, generator=torch.Generator().manual_seed(seed)) * 4


def paste_alone(logits: torch.Tensor, box) -> torch.Tensor:
    """detectron2's paste of one window into the output image, boxes scaled by SCALE."""
    scaled = torch.tensor([box]) * torch.tensor([SCALE[0], SCALE[1], SCALE[0], SCALE[1]])
    return paste_masks_in_image(logits[None].sigmoid(), scaled, OUT_SIZE)[0]


class TestPasteAtTheBorder(unittest.TestCase):
    def check(self, sides, boxes, outside):
        windows = [window(side, seed) for seed, side in enumerate(sides)]
        boxes_t = Boxes(torch.tensor(boxes))
        masks = paste_mask_windows(MaskWindows(windows), boxes_t, SCALE, OUT_SIZE)
        self.assertEqual((masks.shape, masks.dtype), ((len(boxes),) + OUT_SIZE, torch.bool))
        for i, box in enumerate(boxes):
            with self.subTest(box=box):
                if i in outside:
                    self.assertFalse(bool(masks[i].any()))
                else:
                    self.assertTrue(torch.equal(masks[i], paste_alone(windows[i], box)))
        return masks

    def test_one_window_size(self):
        # All windows of one size: the path that pastes them in a single call.
        boxes = [INSIDE, IN_RIGHT_PADDING, LEFT_OF_IMAGE, IN_BOTTOM_PADDING, ACROSS_RIGHT_EDGE]
        masks = self.check([5] * 5, boxes, outside={1, 2, 3})
        self.assertTrue(bool(masks[0].any()) and bool(masks[4].any()))  # not trivially empty

    def test_mixed_window_sizes(self):
        boxes = [IN_RIGHT_PADDING, INSIDE, ACROSS_RIGHT_EDGE, LEFT_OF_IMAGE]
        self.check([3, 5, 3, 5], boxes, outside={0, 3})

    def test_every_window_outside(self):
        self.check([3, 5], [IN_RIGHT_PADDING, IN_BOTTOM_PADDING], outside={0, 1})


if __name__ == "__main__":
    unittest.main()
