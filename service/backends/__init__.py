"""Where inference runs: in this process (TensorFlow) or in a TensorFlow Serving server."""
