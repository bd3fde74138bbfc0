"""The user commands: predict, evaluate, compare, store, and the dashboard."""
