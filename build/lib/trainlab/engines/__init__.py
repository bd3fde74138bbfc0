"""Engines: one interface, `fit(context) -> FitResult`, for the Lightning Trainer and the seed's
hand-written loops (NumPy, autograd); the least-squares reference; DDP; the step callback."""
