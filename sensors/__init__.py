"""Sensors and the jobs they target."""
