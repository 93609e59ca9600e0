"""Simulation: a generated district, a simulated day through the real API, what-if replays."""
