"""cliperase."""
