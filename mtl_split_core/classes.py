"""Class lists and the ignore label, shared by the simulator, the default model card and the
visualisation.

The simulator is the source of truth for what exists in its world; a trained model carries its
own lists in its card, so other models may use other classes.
"""

# Things: objects that get 2D boxes. Each name is a mesh shipped in ``pybullet_data``.
DETECTION_CLASSES = ("duck", "teddy", "r2d2", "racecar", "husky", "table", "soccerball")

# Stuff first, then the things, so segmentation id = len(STUFF_CLASSES) + detection id.
STUFF_CLASSES = ("background", "ground", "building", "clutter")
SEGMENTATION_CLASSES = STUFF_CLASSES + DETECTION_CLASSES

# Segmentation id of unlabelled pixels: ignored by the loss and the metric, black in pictures.
IGNORE_ID = 255


def segmentation_id(detection_id: int) -> int:
    """Segmentation class id of a detection class id."""
    return len(STUFF_CLASSES) + detection_id
