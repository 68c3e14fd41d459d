"""imgclf serving: REST and gRPC front ends over one core, a versioned model registry and a batcher."""
