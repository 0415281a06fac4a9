"""mmcore."""
