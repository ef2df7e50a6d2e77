"""Scene styles: how a simulated world looks and where its camera rides, by name.

``default`` is what the shipped model was trained on; ``novel`` (a checker ground, low dusk light
with shadows, a camera mounted 1.6-2.4 m high looking down) is a domain shift, for showing
fine-tuning on a robot's own recordings. Kept apart from the renderer so commands can list the
names without importing PyBullet.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class SceneStyle:
    """How a scene looks and where its camera rides (every range is sampled uniformly)."""

    camera_height: tuple[float, float] = (0.3, 1.5)   # metres above the ground
    pitch_deg: tuple[float, float] = (0.0, 15.0)      # downward, times (0.5 + height)
    textured: bool = False      # a checker ground instead of a flat colour
    ambient: tuple[float, float] = (0.4, 0.7)
    diffuse: tuple[float, float] = (0.3, 0.6)
    light_colour: tuple[float, float] = (0.8, 1.0)     # each RGB channel
    light_elevation: tuple[float, float] = (0.5, 1.5)  # z of the light direction
    shadows: bool = False


STYLES = {
    "default": SceneStyle(),
    "novel": SceneStyle(camera_height=(1.6, 2.4), pitch_deg=(6.0, 14.0), textured=True,
                        ambient=(0.15, 0.3), diffuse=(0.6, 0.9), light_colour=(0.6, 1.0),
                        light_elevation=(0.15, 0.4), shadows=True),
}
