"""What a platform registers before it sends: categories, recipients and API keys."""
