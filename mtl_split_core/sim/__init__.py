"""Simulated robot camera (PyBullet) with exact depth, semantic labels and boxes."""
