"""Tools on top of the public API: benchmarks now; inspectors and capture to come."""
