"""Multimodal sentiment inference service (text, image, audio → negative/neutral/positive)."""

__version__ = "0.1.0"
