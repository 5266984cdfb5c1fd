"""Scenes of the synthetic world: seeded sampling of coloured shapes on a grid, and rendering them with Pillow.

Cells are aligned to 28-pixel blocks (Qwen2.5-VL: patch 14, spatial merge 2, so one visual token per 28x28 block)
and each cell holds at most one shape drawn to fill most of it, so even a tiny vision encoder sees every object in
its own token(s). Drawing is without anti-aliasing, so every non-white pixel is exactly one palette colour.
"""

from __future__ import annotations

import random
from dataclasses import dataclass

from PIL import Image, ImageDraw

# Very distinct colours: a tiny encoder separates them from a single token; order is the canonical ordering.
PALETTE: dict[str, tuple[int, int, int]] = {
    "red": (220, 30, 30),
    "blue": (30, 70, 230),
    "green": (20, 160, 50),
    "yellow": (240, 200, 0),
}
COLOURS: tuple[str, ...] = tuple(PALETTE)
SHAPES: tuple[str, ...] = ("circle", "square", "triangle")
BLOCK = 28
BACKGROUND = (255, 255, 255)


@dataclass(frozen=True)
class SceneObject:
    """One shape in one cell; `scale`, `dx`, `dy` are rendering jitter and not part of the ground truth."""

    colour: str
    shape: str
    row: int
    col: int
    scale: float = 0.85
    dx: float = 0.0
    dy: float = 0.0


@dataclass(frozen=True)
class Scene:
    """The ground truth of one image: a `grid` x `grid` board and its objects, in row-major cell order."""

    grid: int
    objects: tuple[SceneObject, ...]

    def signature(self) -> str:
        """Canonical text of what is where (colour, shape, cell), independent of jitter."""
        return ";".join(f"{o.row},{o.col}:{o.colour} {o.shape}" for o in sorted(self.objects, key=_cell))


def _cell(obj: SceneObject) -> tuple[int, int]:
    return (obj.row, obj.col)


def check_geometry(image_size: int, grid: int) -> int:
    """Return the cell side in pixels, or raise if cells would not align to 28-pixel blocks."""
    if grid < 1:
        raise ValueError(f"grid must be >= 1, got {grid!r}")
    if image_size % grid or (image_size // grid) % BLOCK:
        raise ValueError(
            f"image_size={image_size!r} with grid={grid!r} does not give cells whose side is a multiple of {BLOCK} "
            f"(e.g. image_size={BLOCK * grid})"
        )
    return image_size // grid


def sample_scene(
    rng: random.Random, *, grid: int = 4, min_objects: int = 1, max_objects: int = 6, jitter: bool = True
) -> Scene:
    """Draw a scene: a uniform object count in [min_objects, max_objects], distinct cells, uniform colour/shape."""
    cells = grid * grid
    if not 1 <= min_objects <= max_objects <= cells:
        raise ValueError(
            f"need 1 <= min_objects <= max_objects <= grid*grid={cells}, got {min_objects}..{max_objects}"
        )
    n = rng.randint(min_objects, max_objects)
    chosen = sorted(rng.sample(range(cells), n))
    objects = []
    for index in chosen:
        colour, shape = rng.choice(COLOURS), rng.choice(SHAPES)
        # Jitter is drawn even when disabled so the ground truth of a seed does not depend on the flag.
        scale, dx, dy = rng.uniform(0.7, 0.92), rng.uniform(-1, 1), rng.uniform(-1, 1)
        if not jitter:
            scale, dx, dy = 0.85, 0.0, 0.0
        objects.append(SceneObject(colour, shape, index // grid, index % grid, scale, dx, dy))
    return Scene(grid=grid, objects=tuple(objects))


def render(scene: Scene, image_size: int = 112) -> Image.Image:
    """Draw the scene as an RGB image of side `image_size` on a white background."""
    cell = check_geometry(image_size, scene.grid)
    image = Image.new("RGB", (image_size, image_size), BACKGROUND)
    draw = ImageDraw.Draw(image)
    for obj in scene.objects:
        side = max(4, round(cell * obj.scale))
        # Keep a one-pixel margin so a shape never spills into the neighbouring cell (tests read cells alone).
        slack = (cell - 2 - side) / 2
        left = obj.col * cell + 1 + round(slack + obj.dx * max(slack, 0))
        top = obj.row * cell + 1 + round(slack + obj.dy * max(slack, 0))
        right, bottom = left + side - 1, top + side - 1
        colour = PALETTE[obj.colour]
        if obj.shape == "circle":
            draw.ellipse((left, top, right, bottom), fill=colour)
        elif obj.shape == "square":
            draw.rectangle((left, top, right, bottom), fill=colour)
        elif obj.shape == "triangle":
            draw.polygon([(left + (side - 1) / 2, top), (right, bottom), (left, bottom)], fill=colour)
        else:
            raise ValueError(f"unknown shape {obj.shape!r}; expected one of {SHAPES}")
    return image
