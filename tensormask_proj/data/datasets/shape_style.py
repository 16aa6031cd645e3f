"""
Styles of the embedded "shapes" dataset: what a scene may contain and how hard it looks.

A style fixes the classes (which outlines), the image size, the object count and size range,
occlusion, crowds, and the photometric difficulty (textured backgrounds and fills, clutter
lines, illumination and noise). Three styles are registered:

* ``"default"`` (``shapes_train`` / ``shapes_val``): learnable from scratch in minutes on a CPU,
  and still not trivial. Six classes that differ only by outline (circle, triangle, ring, star,
  bar, cross: outlines that stay distinct at 24 px, see DEFAULT_CLASSES; no triangle angle below
  45 degrees, so that no triangle looks like a bar), objects from 24 px to
  2/3 of the image (every FPN level from P2 to P5 gets objects), up to four per image,
  overlapping and occluding one another, a few crowd regions, flat or gradient backgrounds with
  smooth colour variation and a thin clutter line, flat or shaded fills that contrast with what
  lies around them.
* ``"stress"`` (``shapes_stress_train`` / ``shapes_stress_val``): the original, much harder set,
  with the original six classes (circle, triangle, square, star, hexagon, cross: three of them
  convex outlines that differ by a pixel or two at small sizes). Objects down to 8 px, up to
  eight per image, striped/checkered/noise textures on objects and background alike (neither a
  colour threshold nor an edge detector separates objects), strong illumination changes and
  noise. detectron2's Mask R-CNN R-18-GN-FPN reaches only about 7 mask AP on it after 500
  iterations from scratch.
* ``"small"`` (``shapes_small_train`` / ``shapes_small_val``): for measuring how the models learn
  small objects. The default style's classes (so the quick configs' 6 classes fit), images and
  look, in dense scenes of small objects: sizes log-uniform in 8-40 px, 6 to 14 objects drawn
  per image, no crowd regions, and occlusion limited by the visible fraction only (see the
  style's comments). shapes_small_train (generator version 6), of 400 images: 3782 objects,
  larger box side (of the visible part, as annotated) min 7.4 / median 17.8 / max 40.05 px,
  44% under 16 px; 98.9% COCO "small" (annotated area < 32^2 px, which COCOeval's APs uses),
  89.0% with a box area under 32^2; 0 to 14 objects per image, median 10, mean 9.5 (11 empty
  images; occlusion removes a few objects). shapes_small_val (100 images): 935 objects, median
  side 18.6 px, 98.9% COCO "small", 4 to 14 objects per image, mean 9.3. To reproduce (writes
  the split under $DETECTRON2_DATASETS on first use)::

      python - <<'EOF'
      import json, numpy as np
      from tensormask_proj.data.datasets import prepare_dataset
      coco = json.load(open(prepare_dataset("shapes_small_train").json_file))
      anns = [a for a in coco["annotations"] if not a["iscrowd"]]
      side = np.array([max(a["bbox"][2:]) for a in anns])
      per_image = np.bincount([a["image_id"] for a in anns], minlength=len(coco["images"]) + 1)
      print(len(anns), side.min(), np.median(side), side.max(), (side < 16).mean(),
            np.mean([a["area"] < 32 ** 2 for a in anns]), per_image[1:].min(),
            np.median(per_image[1:]), per_image[1:].mean(), per_image[1:].max())
      EOF
"""

from dataclasses import dataclass, replace
from typing import Dict, Tuple

from .shape_geometry import SHAPE_OUTLINES, check_min_triangle_angle

__all__ = ["SceneStyle", "SCENE_STYLES", "DEFAULT_CLASSES", "STRESS_CLASSES"]

# The original six classes. Circle, square and hexagon are convex outlines that differ by 1-2 px
# at 24 px (a hexagon's sides lie 1.6 px inside its circumcircle there): trained for the main
# job's 1300 iterations, detectron2's Mask R-CNN gave the right class to 7 of 25 circles, 3 of
# 29 squares and 26 of 44 hexagons of shapes_val (generator version 4), against 26/42
# triangles, 34/49 stars and 28/32 crosses (tools/class_confusion.py; docs/tuning.md).
STRESS_CLASSES: Tuple[str, ...] = ("circle", "triangle", "square", "star", "hexagon", "cross")
# The default style keeps the three outlines that were told apart and the circle, and replaces
# square and hexagon with a ring (a circle with a hole: the mask, not the box, tells it from a
# circle) and a bar (elongated, 2.9-4 : 1).
DEFAULT_CLASSES: Tuple[str, ...] = ("circle", "triangle", "ring", "star", "bar", "cross")


@dataclass(frozen=True)
class SceneStyle:
    """
    Every knob of the scene generator (``shape_scene``) and of its textures
    (``shape_textures``). Sizes are in pixels; "size" of an object is the larger side of its
    bounding box.
    """

    # Outline of each class (names from shape_geometry.SHAPE_OUTLINES): contiguous class id k
    # is classes[k], json category id k + 1.
    classes: Tuple[str, ...]
    # Least interior angle of a triangle, in degrees (0 < a < 60; 60 is only the equilateral).
    min_triangle_angle: float
    # Image geometry.
    image_height: int
    image_width_range: Tuple[int, int]  # inclusive
    # Objects: count uniform in [min_objects, max_objects] (0 with empty_image_prob), size
    # log-uniform in [min_object_size, max_object_size_fraction * min(H, W)]. Objects that
    # occlusion hides are removed afterwards, so an image may end up with fewer than min_objects.
    min_object_size: float
    max_object_size_fraction: float
    min_objects: int
    max_objects: int
    empty_image_prob: float
    crowd_prob: float
    # An object is removed from the scene (not just from the annotations, so no unannotated
    # fragments remain visible) when less than this fraction of it, or fewer than
    # min_visible_area pixels, would stay visible.
    min_visible_fraction: float
    min_visible_area: float
    # Textures: probability of each pattern ("flat", "gradient", "stripes", "checker",
    # "noise") for object fills and for the background.
    fill_pattern_probs: Tuple[float, float, float, float, float]
    background_pattern_probs: Tuple[float, float, float, float, float]
    # Std of the second fill colour around the first (how much a fill varies inside an object).
    fill_color_variation: float
    # Least colour distance (L2 on 0..255 BGR) of a fill to the colours around the object.
    min_fill_contrast: float
    # Background: range of the colour difference between its two pattern colours (L-inf on
    # 0..255), range of the strength of the smooth colour blotches, number of clutter lines.
    background_contrast: Tuple[float, float]
    background_tint: Tuple[float, float]
    max_clutter_lines: int
    # Photometric finish: illumination gain in [1 - g, 1 + g], sensor noise std range.
    illumination_gain: float
    noise_sigma: Tuple[float, float]

    def __post_init__(self):
        check_min_triangle_angle(self.min_triangle_angle, "SceneStyle.min_triangle_angle")
        if not 1 <= self.min_objects <= self.max_objects:
            raise ValueError(
                "SceneStyle needs 1 <= min_objects <= max_objects, got min_objects "
                f"{self.min_objects}, max_objects {self.max_objects}"
            )
        unknown = [c for c in self.classes if c not in SHAPE_OUTLINES]
        if not self.classes or unknown or len(set(self.classes)) != len(self.classes):
            raise ValueError(
                f"SceneStyle.classes must be distinct names from {SHAPE_OUTLINES}, got "
                f"{self.classes}"
            )


_DEFAULT = SceneStyle(
    classes=DEFAULT_CLASSES,
    # 45 degrees (generator version 6; 30 before): at small sizes a 30-degree triangle is a
    # sliver that the one-stage models called "bar" (11 and 10 of 40 triangles of
    # shapes_val in version 5, tools/class_confusion.py); the bar's aspect ratio is 2.9-4.
    min_triangle_angle=45.0,
    image_height=192,
    image_width_range=(192, 256),
    # 24 px: TensorMask's finest windows (stride 4) give such an object a 6x6 mask; a
    # 16 px one would get 4x4 cells, too coarse for the outline that decides its class.
    min_object_size=24.0,
    max_object_size_fraction=0.66,
    min_objects=1,
    max_objects=4,
    empty_image_prob=0.02,
    crowd_prob=0.03,
    min_visible_fraction=0.7,
    min_visible_area=40.0,
    fill_pattern_probs=(0.6, 0.4, 0.0, 0.0, 0.0),
    background_pattern_probs=(0.5, 0.5, 0.0, 0.0, 0.0),
    fill_color_variation=20.0,
    min_fill_contrast=110.0,
    background_contrast=(10.0, 50.0),
    background_tint=(10.0, 30.0),
    max_clutter_lines=1,
    illumination_gain=0.1,
    noise_sigma=(0.0, 2.0),
)

SCENE_STYLES: Dict[str, SceneStyle] = {
    "default": _DEFAULT,
    "stress": SceneStyle(
        classes=STRESS_CLASSES,
        min_triangle_angle=30.0,
        image_height=256,
        image_width_range=(256, 320),
        min_object_size=8.0,
        max_object_size_fraction=0.7,
        min_objects=1,
        max_objects=8,
        empty_image_prob=0.03,
        crowd_prob=0.04,
        min_visible_fraction=0.3,
        min_visible_area=12.0,
        fill_pattern_probs=(0.3, 0.2, 0.2, 0.1, 0.2),
        background_pattern_probs=(0.2, 0.2, 0.2, 0.2, 0.2),
        fill_color_variation=45.0,
        min_fill_contrast=70.0,
        background_contrast=(0.0, 255.0),
        background_tint=(20.0, 90.0),
        max_clutter_lines=5,
        illumination_gain=0.2,
        noise_sigma=(2.0, 7.0),
    ),
    # The default style made of small objects (see the module docstring): what differs from
    # "default".
    "small": replace(
        _DEFAULT,
        # Sizes 8-40 px (40 / 192 of the 192 px that min(H, W) always is here), log-uniform.
        min_object_size=8.0,
        max_object_size_fraction=40.0 / 192.0,
        # Dense scenes.
        min_objects=6,
        max_objects=14,
        # No crowd regions: their members (4-8 px) would be as large as the smallest annotated
        # objects, unannotated look-alikes of them.
        crowd_prob=0.0,
        # 10 px (default 40): a whole 8 px bar, triangle, star or cross covers only 15-20 px,
        # so only min_visible_fraction decides what occlusion removes.
        min_visible_area=10.0,
    ),
}
