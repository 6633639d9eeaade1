"""Bubble: run untrusted programs under seccomp user notification and watch what they try."""

__version__ = "0.1.0"
