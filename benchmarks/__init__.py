"""Overhead benchmarks of threadline against its peers (``nox -s bench``)."""
