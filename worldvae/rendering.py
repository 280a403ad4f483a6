"""Rendering: an env's state to a training frame, cropped and area-averaged to IMG_SIZE.

A frame is the env's image observation where it has one (CarRacing, Atari), else its
rgb_array render (classic control); CartPole can be drawn straight to the kept rows.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence

import gymnasium as gym
import numpy as np
from PIL import Image

from worldvae.envs import env_family, observes_images


def _resize(image: Image.Image, box: tuple[float, float, float, float], img_size: int) -> np.ndarray:
    """Area-average (antialias) the `box` region of `image` to (3, img_size, img_size) uint8."""
    small = image.resize((img_size, img_size), Image.Resampling.BOX, box=box)
    return np.asarray(small.convert("RGB")).transpose(2, 0, 1)


def preprocess_frame(frame: np.ndarray, crop: Sequence[float], img_size: int) -> np.ndarray:
    """(H, W, 3) render -> cropped, area-averaged (antialiased) (3, img_size, img_size) uint8."""
    height, width = frame.shape[:2]
    top, bottom, left, right = crop
    return _resize(Image.fromarray(frame), (left * width, top * height, right * width, bottom * height), img_size)


def render_cartpole(env: gym.Env, crop: Sequence[float], img_size: int) -> np.ndarray:
    """CartPole's own drawing (gymnasium's CartPoleEnv.render), cut down to what we keep.

    It skips the rows above the crop, reads the surface without a copy and resizes once;
    the picture is env.render() followed by preprocess_frame, pixel for pixel
    (tests/test_collect.py checks it at many states and sizes), about 3x faster.
    """
    import pygame
    from pygame import gfxdraw

    cart_pole = env.unwrapped
    width, height = cart_pole.screen_width, cart_pole.screen_height
    top, bottom, left, right = crop
    # gymnasium draws with y up and flips the surface at the end: the rows above the crop's top are
    # never drawn. Those below its bottom are, so that every coordinate stays gymnasium's own.
    kept = math.ceil(height * (1 - top))
    surface = pygame.Surface((width, kept))
    surface.fill((255, 255, 255))

    x, _, theta, _ = cart_pole.state
    scale = width / (cart_pole.x_threshold * 2)
    pole_width, pole_length, cart_width, cart_height = 10.0, scale * 2 * cart_pole.length, 50.0, 30.0
    cart_x, cart_y, axle = x * scale + width / 2.0, 100, cart_height / 4.0
    half_w, half_h = cart_width / 2, cart_height / 2
    corners = [(-half_w, -half_h), (-half_w, half_h), (half_w, half_h), (half_w, -half_h)]
    cart = [(cart_x + dx, cart_y + dy) for dx, dy in corners]
    gfxdraw.aapolygon(surface, cart, (0, 0, 0))
    gfxdraw.filled_polygon(surface, cart, (0, 0, 0))
    half_w, tip = pole_width / 2, pole_length - pole_width / 2
    pole = []
    for corner in [(-half_w, -half_w), (-half_w, tip), (half_w, tip), (half_w, -half_w)]:
        dx, dy = pygame.math.Vector2(corner).rotate_rad(-theta)
        pole.append((cart_x + dx, cart_y + axle + dy))
    gfxdraw.aapolygon(surface, pole, (202, 152, 101))
    gfxdraw.filled_polygon(surface, pole, (202, 152, 101))
    axle_at, radius = (int(cart_x), int(cart_y + axle)), int(pole_width / 2)
    gfxdraw.aacircle(surface, *axle_at, radius, (129, 132, 203))
    gfxdraw.filled_circle(surface, *axle_at, radius, (129, 132, 203))
    gfxdraw.hline(surface, 0, width, cart_y, (0, 0, 0))

    # a 32-bit surface is B, G, R, X in memory: Pillow reads it in place
    image = Image.frombuffer("RGBX", surface.get_size(), surface.get_buffer(), "raw", "BGRX", surface.get_pitch(), 1)
    # gymnasium's flip, before the resize: Pillow's area average is not mirror-symmetric, and flipping
    # the small image instead moved the track line by a row (MSE 0.0001 against env.render())
    flipped = image.transpose(Image.Transpose.FLIP_TOP_BOTTOM)
    first = height - kept  # the full picture's row that is the flipped surface's row 0
    return _resize(flipped, (left * width, top * height - first, right * width, bottom * height - first), img_size)


Renderer = Callable[[gym.Env, np.ndarray], np.ndarray]  # (env, its observation) -> a training frame


def frame_renderer(env: gym.Env, crop: Sequence[float], img_size: int, fast: bool) -> Renderer:
    """The function that turns an env's current state into a training frame: its image observation
    where it has one, else its rgb_array render (CartPole's drawn straight to the kept rows when fast)."""
    if observes_images(env):
        return lambda _env, obs: preprocess_frame(obs, crop, img_size)
    if draws_fast(env.spec.id, fast):
        return lambda env, _obs: render_cartpole(env, crop, img_size)
    return lambda env, _obs: preprocess_frame(env.render(), crop, img_size)


def draws_fast(env_id: str, fast: bool) -> bool:
    """FAST_RENDER as it applies: only CartPole has a renderer of its own."""
    return fast and env_family(env_id) == "CartPole"


def frame_size(env: gym.Env) -> tuple[int, int]:
    """(height, width) of the picture a frame is cut from, for an env after reset()."""
    return env.observation_space.shape[:2] if observes_images(env) else env.render().shape[:2]

