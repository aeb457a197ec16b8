"""Runtimes: turn a graph or generated source into something callable, and call it."""
