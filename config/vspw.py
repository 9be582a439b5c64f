"""VSPW preset (``--dataset vspw``): 124 classes in label-value order (value v = class v − 1), 255 = ignore.

Names: the release's ``label_num_dic_final.json`` when ``--data-path`` holds it, else the list below (the
same names in the same value order: wall = 1 … train = 124). Colours: the release ships no palette, so class
i gets the colour the PASCAL VOC colour-map rule gives label value i + 1 (bits of the value spread over
the high bits of R, G and B), distinct for every class. Frame size: the smallest height and width of the
training videos (480 × 640 without a VSPW tree, e.g. for --inference on a video file); the training crop
is 3/4 of it. No class weights: the CE is unweighted (uniform weights).
"""
from __future__ import annotations

from config.dataset_preset import DatasetPreset
from dataset.vspw import IGNORE_INDEX, NUM_CLASSES, release_class_names, vspw_frame_size

CLASS_NAMES = (
    "wall", "ceiling", "door", "stair", "ladder", "escalator", "Playground_slide", "handrail_or_fence", "window",
    "rail", "goal", "pillar", "pole", "floor", "ground", "grass", "sand", "athletic_field", "road", "path",
    "crosswalk", "building", "house", "bridge", "tower", "windmill", "well_or_well_lid", "other_construction", "sky",
    "mountain", "stone", "wood", "ice", "snowfield", "grandstand", "sea", "river", "lake", "waterfall", "water",
    "billboard_or_Bulletin_Board", "sculpture", "pipeline", "flag", "parasol_or_umbrella", "cushion_or_carpet",
    "tent", "roadblock", "car", "bus", "truck", "bicycle", "motorcycle", "wheeled_machine", "ship_or_boat", "raft",
    "airplane", "tyre", "traffic_light", "lamp", "person", "cat", "dog", "horse", "cattle", "other_animal", "tree",
    "flower", "other_plant", "toy", "ball_net", "backboard", "skateboard", "bat", "ball",
    "cupboard_or_showcase_or_storage_rack", "box", "traveling_case_or_trolley_case", "basket", "bag_or_package",
    "trash_can", "cage", "plate", "tub_or_bowl_or_pot", "bottle_or_cup", "barrel", "fishbowl", "bed", "pillow",
    "table_or_desk", "chair_or_seat", "bench", "sofa", "shelf", "bathtub", "gun", "commode", "roaster",
    "other_machine", "refrigerator", "washing_machine", "Microwave_oven", "fan", "curtain", "textiles", "clothes",
    "painting_or_poster", "mirror", "flower_pot_or_vase", "clock", "book", "tool", "blackboard", "tissue",
    "screen_or_television", "computer", "printer", "Mobile_phone", "keyboard", "other_electronic_product", "fruit",
    "food", "instrument", "train",
)
DEFAULT_FRAME_SIZE = (480, 640)


def voc_color(value: int) -> tuple[int, int, int]:
    """The PASCAL VOC colour-map rule: bit 3j (+1, +2) of ``value`` sets bit 7 − j of R (G, B)."""
    rgb = [0, 0, 0]
    for j in range(8):
        for channel in range(3):
            rgb[channel] |= ((value >> (3 * j + channel)) & 1) << (7 - j)
    return rgb[0], rgb[1], rgb[2]


PALETTE = tuple(voc_color(value) for value in range(1, NUM_CLASSES + 1))


def vspw_preset(root: str) -> DatasetPreset:
    """The VSPW preset for the tree at ``root`` (names and frame size read from it where it has them)."""
    frame_size = vspw_frame_size(root) or DEFAULT_FRAME_SIZE
    return DatasetPreset(
        name="vspw", kind="vspw", num_classes=NUM_CLASSES, class_names=release_class_names(root) or CLASS_NAMES,
        palette=PALETTE, data_path=root, frame_size=frame_size,
        crop_size=(round(frame_size[0] * 3 / 4), round(frame_size[1] * 3 / 4)), class_weights=(1.0,) * NUM_CLASSES,
        ignore_index=IGNORE_INDEX, label_format="trainIds",
    )
