"""Peer servers for the side-by-side benchmark; each uses :mod:`benchmarks.pipeline` (the service's own
preprocessing functions and the same ONNX model) so that only the serving machinery differs."""
