"""mm_cli."""
