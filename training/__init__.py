"""Offline training job: the talk's CNN, trained and exported as a versioned SavedModel."""
