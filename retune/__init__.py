"""Package placeholder; filled in by the serving-spine change."""
