"""Datasets: the on-disk sim format, compact shards, and batched augmentation."""
