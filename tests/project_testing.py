"""
Helpers shared by the tests of both models (on the path through pytest.ini's ``pythonpath``):
project cfgs on the CPU, synthetic inputs, and the from-scratch training (the package's
Trainer) + COCO evaluation of the learning tests.
"""

import os
import time

import torch
from detectron2.modeling import build_model
from detectron2.structures import BitMasks, Boxes, Instances, PolygonMasks
from detectron2.utils.env import seed_all_rng
from detectron2.utils.events import EventStorage

from tensormask_proj.config import get_project_cfg
from tensormask_proj.data import prepare_dataset
from tensormask_proj.data.dataset_mapper import thing_semantic_from_instances
from tensormask_proj.engine import NamedErrorMapper, Trainer, build_readable_test_loader

REPO_ROOT = os.path.abspath(os.path.join(os.path.dirname(__file__), ".."))
CONFIG_DIR = os.path.join(REPO_ROOT, "configs")


def project_cfg(config_file, opts=()):
    """A project cfg (both models' keys) merged from ``config_file`` and ``opts``, on the CPU."""
    cfg = get_project_cfg()
    cfg.merge_from_file(config_file)
    cfg.merge_from_list(list(opts))
    cfg.MODEL.DEVICE = "cpu"
    return cfg


def shortened_schedule_opts(config_file, iters):
    """
    Opts that shorten ``config_file``'s schedule to ``iters`` iterations, its LR steps and
    warm-up scaled with it, so that a learning test trains the quick config's schedule in
    miniature (e.g. 1300 / (1040, 1222) / warm-up 300 become 350 / (280, 329) / 81).
    """
    solver = project_cfg(config_file).SOLVER
    scale = iters / solver.MAX_ITER
    steps = tuple(round(step * scale) for step in solver.STEPS)
    warmup = max(1, round(solver.WARMUP_ITERS * scale))
    return ["SOLVER.MAX_ITER", iters, "SOLVER.STEPS", steps, "SOLVER.WARMUP_ITERS", warmup]


def assert_every_config_builds(test, config_files, meta_architecture: str, batch=None):
    """
    Each of ``config_files`` loads and builds a ``meta_architecture`` model on the CPU. With
    ``batch`` (training inputs), each also trains on it: one forward and backward, after which
    every trainable parameter has a gradient. A parameter outside the loss's graph would make
    DistributedDataParallel stop at the second iteration.
    """
    test.assertGreater(len(config_files), 0)
    for path in config_files:
        with test.subTest(config=os.path.relpath(path, CONFIG_DIR)):
            cfg = project_cfg(path)
            test.assertEqual(cfg.MODEL.META_ARCHITECTURE, meta_architecture)
            model = build_model(cfg)
            test.assertEqual(type(model).__name__, meta_architecture)
            test.assertEqual(model.device, torch.device("cpu"))
            if batch is None:
                continue
            model.train()
            with EventStorage():
                losses = model(batch)
            sum(losses.values()).backward()
            unused = [n for n, p in model.named_parameters() if p.requires_grad and p.grad is None]
            test.assertEqual(unused, [], "parameters outside the loss's graph")


def make_instances(image_size, boxes, classes, bitmask=False, shape="rectangle"):
    """
    Ground truth with ``gt_boxes``, ``gt_classes`` and one mask per box: the box itself
    (``shape="rectangle"``) or the triangle (x0, y1), ((x0 + x1) / 2, y0), (x1, y1) inscribed in
    it (``"triangle"``), as PolygonMasks, or as BitMasks with ``bitmask`` (rectangles filled over
    the rounded box, triangles rasterised from the polygon).
    """
    if shape not in ("rectangle", "triangle"):
        raise ValueError(f"shape must be 'rectangle' or 'triangle', got {shape!r}")
    h, w = image_size
    boxes = torch.tensor(boxes, dtype=torch.float32).view(-1, 4)
    inst = Instances((h, w), gt_boxes=Boxes(boxes))
    inst.gt_classes = torch.tensor(classes, dtype=torch.int64)
    if shape == "rectangle" and bitmask:
        masks = torch.zeros(len(boxes), h, w, dtype=torch.bool)
        for m, (x0, y0, x1, y1) in zip(masks, boxes.round().long().tolist()):
            m[y0:y1, x0:x1] = True
        inst.gt_masks = BitMasks(masks)
        return inst
    if shape == "rectangle":
        polygons = [[[x0, y0, x1, y0, x1, y1, x0, y1]] for x0, y0, x1, y1 in boxes.tolist()]
    else:
        polygons = [[[x0, y1, (x0 + x1) / 2, y0, x1, y1]] for x0, y0, x1, y1 in boxes.tolist()]
    inst.gt_masks = PolygonMasks(polygons)
    if bitmask:
        inst.gt_masks = BitMasks.from_polygon_masks(inst.gt_masks, h, w)
    return inst


def make_input(image_size, boxes=(), classes=(), seed=0, bitmask=False, shape="rectangle"):
    """
    A training input as the project's mappers give it: a random uint8 BGR image drawn from
    ``seed``, :func:`make_instances` (``boxes``, ``classes``, ``bitmask``, ``shape``), and the
    "basis_sem" map BlendMask trains on (the other models ignore it).
    """
    g = torch.Generator().manual_seed(seed)
    h, w = image_size
    instances = make_instances(image_size, list(boxes), list(classes), bitmask, shape)
    return {
        "image": torch.randint(0, 256, (3, h, w), dtype=torch.uint8, generator=g),
        "height": h,
        "width": w,
        "instances": instances,
        "basis_sem": thing_semantic_from_instances(instances, image_size),
    }


def regular_and_empty_batch(images, bitmask=False, shape="rectangle"):
    """
    The inputs of :func:`make_input` for ``images``, a model's (image_size, boxes, classes, seed)
    per image: images with objects of several sizes and at least one without any.
    """
    return [
        make_input(size, boxes, classes, seed, bitmask, shape)
        for size, boxes, classes, seed in images
    ]


def train_and_evaluate(cfg, output_dir, train_mapper=None, test_mapper=None):
    """
    Train ``cfg`` from scratch with the package's :class:`~tensormask_proj.engine.Trainer` (as
    ``train_net.py`` does: its loader, inner trainer, SOLVER.AMP autocast, hooks), writing into
    ``output_dir``, then COCO-evaluate it on DATASETS.TEST[0] with ``Trainer.test``, and print
    the APs and the time taken. SEED < 0 trains with SEED 0, so that a run repeats itself.
    ``train_mapper`` / ``test_mapper`` replace the Trainer's mappers when given.

    Returns:
        (results, losses): the evaluator's {"bbox": {...}, "segm": {...}} and the total loss of
        every iteration.
    """
    for name in (*cfg.DATASETS.TRAIN, *cfg.DATASETS.TEST):
        prepare_dataset(name, progress=False)  # COCOEvaluator reads the json files
    start = time.perf_counter()
    cfg = cfg.clone()
    cfg.defrost()
    cfg.OUTPUT_DIR = output_dir
    cfg.SEED = max(cfg.SEED, 0)
    # Only model_final.pth is written (one checkpoint, not one per period).
    cfg.SOLVER.CHECKPOINT_PERIOD = cfg.SOLVER.MAX_ITER + 1
    test_cfg = cfg.clone()
    test_cfg.DATASETS.TEST = cfg.DATASETS.TEST[:1]
    # No evaluation by the trainer's hook: the one evaluation is Trainer.test's below.
    cfg.DATASETS.TEST = ()
    cfg.freeze()
    test_cfg.freeze()
    # Seeds the model's initialisation (as default_setup does in train_net.py).
    seed_all_rng(cfg.SEED)
    trainer = _trainer_class(train_mapper, test_mapper)(cfg)
    trainer.resume_or_load(resume=False)
    trainer.train()
    losses = [loss for loss, _ in trainer.storage.history("total_loss").values()]
    results = trainer.test(test_cfg, trainer.model)
    mask, box = results.get("segm", {}), results["bbox"]
    print(
        f"\n{cfg.MODEL.META_ARCHITECTURE} {cfg.SOLVER.MAX_ITER} iterations, "
        f"{torch.get_num_threads()} threads: mask AP {mask.get('AP', float('nan')):.2f} "
        f"(AP50 {mask.get('AP50', float('nan')):.2f}), box AP {box['AP']:.2f} "
        f"(AP50 {box['AP50']:.2f}), {time.perf_counter() - start:.0f} s"
    )
    return results, losses


def assert_ap_above(test, results, bounds):
    """
    Every ``bounds`` entry ``"task/metric": bound`` (e.g. ``"segm/AP50": 8.9``) holds as
    ``results[task][metric] > bound``; the measured values are printed first (``pytest -s``), so
    that a run that fails still shows how far it got.
    """
    measured = {name: results[name.split("/")[0]][name.split("/")[1]] for name in bounds}
    print("learning test:", {name: round(value, 2) for name, value in measured.items()})
    for name, bound in bounds.items():
        test.assertGreater(measured[name], bound, name)


def _trainer_class(train_mapper=None, test_mapper=None):
    """:class:`Trainer`, its loaders built with ``train_mapper`` / ``test_mapper`` if given (each
    wrapped as the Trainer wraps its own, so errors name the image file)."""
    if train_mapper is None and test_mapper is None:
        return Trainer
    # Imported here: imported before tensormask_proj.engine, this module would enter the
    # engine's import of it half-initialised (data.resumable_train_loader imports the engine).
    from tensormask_proj.data.resumable_train_loader import build_resumable_train_loader

    class TrainerWithMappers(Trainer):
        @classmethod
        def build_train_loader(cls, cfg):
            if train_mapper is None:
                return super().build_train_loader(cfg)
            return build_resumable_train_loader(cfg, NamedErrorMapper(train_mapper))

        @classmethod
        def build_test_loader(cls, cfg, dataset_name):
            if test_mapper is None:
                return super().build_test_loader(cfg, dataset_name)
            return build_readable_test_loader(cfg, dataset_name, NamedErrorMapper(test_mapper))

    return TrainerWithMappers
