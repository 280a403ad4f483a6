"""What a controller needs from a CarRacing frame: the road. A per-pixel rule for road, and how much
of it a reconstruction keeps.

A road pixel is grey asphalt: its colour channels within ROAD_SPREAD grey levels of each other
and their mean between ROAD_DARKEST and ROAD_BRIGHTEST. CarRacing paints the road (102, 102,
102) to (102, 104, 107), the grass (102, 204, 102) and (102, 230, 102), the curbs red and white
and the car red: none of those is grey and mid-bright. A pixel where road meets grass, averaged
by the resize, counts where it is still grey.
"""

from __future__ import annotations

import numpy as np

ROAD_SPREAD = 24  # grey levels: max - min of (R, G, B)
ROAD_DARKEST, ROAD_BRIGHTEST = 70, 150  # grey levels: the mean of (R, G, B)
SHOWS_ROAD = 0.02  # a frame shows road when this share of its pixels is road


def road_mask(frames_u8: np.ndarray) -> np.ndarray:
    """(N, 3, H, W) uint8 frames -> (N, H, W) bool: which pixels are road."""
    channels = frames_u8.astype(np.int16)
    spread = channels.max(1) - channels.min(1)
    mean = channels.mean(1)
    return (spread <= ROAD_SPREAD) & (mean >= ROAD_DARKEST) & (mean <= ROAD_BRIGHTEST)


def road_iou(originals_u8: np.ndarray, reconstructions_u8: np.ndarray) -> np.ndarray:
    """Per frame, the intersection over union of the road pixels of the frame and of its
    reconstruction; NaN for a frame that shows no road (less than SHOWS_ROAD of it)."""
    return road_scores(originals_u8, reconstructions_u8)[0]


def road_scores(originals_u8: np.ndarray, reconstructions_u8: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Per frame, from one road mask of each: the road IoU (road_iou), whether the frame shows no road,
    and whether its reconstruction paints some (SHOWS_ROAD of its pixels or more): together, a phantom road."""
    truth, made = road_mask(originals_u8), road_mask(reconstructions_u8)
    union = (truth | made).sum((1, 2))
    iou = (truth & made).sum((1, 2)) / np.maximum(union, 1)
    shows = truth.mean((1, 2)) >= SHOWS_ROAD
    return np.where(shows, iou, np.nan), ~shows, made.mean((1, 2)) >= SHOWS_ROAD

