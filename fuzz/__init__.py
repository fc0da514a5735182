"""Long fuzz runs (``make fuzz``); the test suite runs the same properties briefly."""
