"""Benchmarks of airflow-provider-dataforseo against the emulator (not part of the test suite)."""
