"""Rendering: an env's state to a training frame, cropped and area-averaged to IMG_SIZE.

A frame is the env's image observation where it has one (CarRacing, Atari), else its
rgb_array render (classic control). FAST_RENDER draws CartPole straight to the kept rows, and
moves CarRacing's road to the screen with numpy: the same pictures, pixel for pixel, faster.
"""

from __future__ import annotations

import functools
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


_TWO_PI = 2 * math.pi
_QUARTER_EPSILON = 1e-6  # pygame's Vector2.epsilon: angles this close to a quarter turn rotate exactly


def rotate_like_pygame(points: np.ndarray, angle: float) -> np.ndarray:
    """pygame.math.Vector2.rotate_rad on an (..., 2) array, bit for bit: the angle reduced to
    [0, 2 pi) first, quarter turns exact, else the cosine and sine of the reduced angle."""
    angle = math.fmod(angle, _TWO_PI)
    angle += _TWO_PI if angle < 0 else 0.0
    x, y = points[..., 0], points[..., 1]
    if math.fmod(angle + _QUARTER_EPSILON, math.pi / 2) < 2 * _QUARTER_EPSILON:
        quarter = int((angle + _QUARTER_EPSILON) / (math.pi / 2)) % 4
        return np.stack([(x, -y, -x, y)[quarter], (y, x, -y, -x)[quarter]], axis=-1)
    cos, sin = math.cos(angle), math.sin(angle)
    return np.stack([cos * x - sin * y, sin * x + cos * y], axis=-1)


def _car_racing_polygons(car_racing: gym.Env) -> np.ndarray:
    """(1 + 400 + road, 4, 2) world corners in gymnasium's drawing order: the field, the grass
    patches, the road's tiles and curbs. Cached per track (reset() builds a new road_poly list)."""
    from gymnasium.envs.box2d.car_racing import GRASS_DIM, PLAYFIELD

    road_poly = car_racing.road_poly  # held by the cache, so that no later list can take its id
    cached = getattr(car_racing, "_fast_road_corners", None)
    if cached is not None and cached[0] is road_poly and cached[1] == len(road_poly):
        return cached[2]
    field = [(PLAYFIELD, PLAYFIELD), (PLAYFIELD, -PLAYFIELD), (-PLAYFIELD, -PLAYFIELD), (-PLAYFIELD, PLAYFIELD)]
    grass = [[(GRASS_DIM * x + GRASS_DIM, GRASS_DIM * y), (GRASS_DIM * x, GRASS_DIM * y),
              (GRASS_DIM * x, GRASS_DIM * y + GRASS_DIM), (GRASS_DIM * x + GRASS_DIM, GRASS_DIM * y + GRASS_DIM)]
             for x in range(-20, 20, 2) for y in range(-20, 20, 2)]
    road = [[(p[0], p[1]) for p in poly] for poly, _ in road_poly]
    corners = np.array([field, *grass, *road], dtype=np.float64)
    car_racing._fast_road_corners = (road_poly, len(road_poly), corners)
    return corners


def draw_car_racing_road(car_racing: gym.Env, zoom: float, translation: tuple[float, float], angle: float) -> None:
    """gymnasium's CarRacing._render_road with its ~800 polygons moved to the screen by numpy at once,
    where gymnasium moves them one corner at a time in Python (half of a step): the same corners, the
    same off-screen test, the same draw calls in the same order (tests/test_envs.py compares pixels)."""
    from gymnasium.envs.box2d.car_racing import MAX_SHAPE_DIM, WINDOW_H, WINDOW_W
    from pygame import gfxdraw

    corners = _car_racing_polygons(car_racing)
    first_road = len(corners) - len(car_racing.road_poly)
    screen = rotate_like_pygame(corners, angle) * zoom + np.asarray(translation, dtype=np.float64)
    inside = (screen >= -MAX_SHAPE_DIM) & (screen <= (WINDOW_W + MAX_SHAPE_DIM, WINDOW_H + MAX_SHAPE_DIM))
    drawn = inside.all(axis=-1).any(axis=-1)
    drawn[0] = True  # the field, drawn unclipped
    for i in np.flatnonzero(drawn):
        if i == 0:
            color = car_racing.bg_color
        elif i < first_road:
            color = car_racing.grass_color
        else:  # read each frame: a tile's colour changes when the car drives onto it
            color = [int(c) for c in car_racing.road_poly[i - first_road][1]]
        polygon = screen[i].tolist()
        gfxdraw.aapolygon(car_racing.surf, polygon, color)
        gfxdraw.filled_polygon(car_racing.surf, polygon, color)


def _draw_road_fast(env: gym.Env) -> None:
    """Make a CarRacing env draw its road with draw_car_racing_road: its observation is drawn inside
    step(). An env whose class draws the road its own way is left alone."""
    from gymnasium.envs.box2d.car_racing import CarRacing

    car_racing = env.unwrapped
    if isinstance(car_racing, CarRacing) and type(car_racing)._render_road is CarRacing._render_road:
        car_racing._render_road = functools.partial(draw_car_racing_road, car_racing)


Renderer = Callable[[gym.Env, np.ndarray], np.ndarray]  # (env, its observation) -> a training frame


def frame_renderer(env: gym.Env, crop: Sequence[float], img_size: int, fast: bool) -> Renderer:
    """The function that turns an env's current state into a training frame: its image observation
    where it has one, else its rgb_array render. When fast, CartPole is drawn straight to the kept rows,
    and CarRacing's road with numpy: CarRacing draws its observation inside step(), so `env` itself changes."""
    drawn_by = env_family(env.spec.id) if draws_fast(env.spec.id, fast) else None  # whose own renderer, if any
    if drawn_by == "CarRacing":
        _draw_road_fast(env)
    if observes_images(env):
        return lambda _env, obs: preprocess_frame(obs, crop, img_size)
    if drawn_by == "CartPole":
        return lambda env, _obs: render_cartpole(env, crop, img_size)
    return lambda env, _obs: preprocess_frame(env.render(), crop, img_size)


def draws_fast(env_id: str, fast: bool) -> bool:
    """FAST_RENDER as it applies: CartPole and CarRacing have renderers of their own."""
    return fast and env_family(env_id) in ("CartPole", "CarRacing")


def frame_size(env: gym.Env) -> tuple[int, int]:
    """(height, width) of the picture a frame is cut from, for an env after reset()."""
    return env.observation_space.shape[:2] if observes_images(env) else env.render().shape[:2]

