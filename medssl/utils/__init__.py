"""Small shared helpers: atomic output, run folders, seeding and environment capture."""
