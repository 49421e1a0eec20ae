"""Rolling agents out and the knob's metrics (position, chord gain, frontier gap)."""
