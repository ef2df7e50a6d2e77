"""Auxiliary nodes and tools: the simulated camera, the demo collector, bag tools."""
