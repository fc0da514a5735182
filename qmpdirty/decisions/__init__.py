"""Decisions: pure functions from facts (and time, passed in) to outcomes."""
