"""Config schemas and checks: composed by Hydra, checked before torch is imported."""
