"""Project-wide helpers shared by the describe, train, evaluate and publish commands (never shipped with a model)."""
