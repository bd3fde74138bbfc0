"""Engines: one interface, `fit(context) -> FitResult`, for the Lightning Trainer and the seed's
hand-written loops (NumPy, autograd); DDP and which process tracks."""
