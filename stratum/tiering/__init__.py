"""Tiering: where each volume should live (engine), and the simulator that prices a policy."""
