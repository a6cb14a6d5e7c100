"""What `tdb generate` renders (`GenerateSettings`), apart from the renderer: the command line reads its
defaults without importing the imaging libraries the renderer needs."""

from __future__ import annotations

from dataclasses import dataclass

from taskonomy_db.errors import GenerateError
from taskonomy_db.layout import WRITE_LAYOUTS

MIN_SIZE, MAX_SIZE = 32, 512
MANIFEST = "tdb_generate.json"  # what a generated dataset says of itself: its buildings and settings


@dataclass(frozen=True)
class GenerateSettings:
    n_buildings: int = 48
    rooms_per_building: int = 2
    points_per_room: int = 4
    views_per_point: int = 3
    size: int = 64
    seed: int = 0
    layout: str = "taskonomy"

    @property
    def n_views(self) -> int:
        return self.n_buildings * self.rooms_per_building * self.points_per_room * self.views_per_point

    def check(self) -> None:
        for name in ("n_buildings", "rooms_per_building", "points_per_room", "views_per_point"):
            value = getattr(self, name)
            if not isinstance(value, int) or value < 1:
                raise GenerateError(
                    f"{name.replace('n_', '').replace('_', ' ')} must be a positive integer, got {value}"
                )
        if not isinstance(self.size, int) or not MIN_SIZE <= self.size <= MAX_SIZE:
            raise GenerateError(f"unsupported image size {self.size}: choose {MIN_SIZE} to {MAX_SIZE} pixels")
        if self.layout not in WRITE_LAYOUTS:
            raise GenerateError(f"unknown layout {self.layout!r}; expected one of {', '.join(WRITE_LAYOUTS)}")
        if self.points_per_room * self.rooms_per_building > 10_000:
            raise GenerateError("more than 10000 points per building is not supported")
