"""The REST front end (FastAPI): native, TF Serving-compatible and KServe V2 routes."""
