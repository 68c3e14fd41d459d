"""The gRPC front end: imgclf's own API, TF Serving's services, health and reflection."""
