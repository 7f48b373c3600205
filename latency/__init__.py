"""Per-device latency lookup tables: build, calibrate, validate, predict, and profile remote devices."""
from latency.errors import LatencyError
from latency.table import Calibration, Entry, LatencyTable, table_path

__all__ = ["LatencyError", "LatencyTable", "Entry", "Calibration", "table_path"]
