"""Model cards rendered from templates/ with recorded results."""
