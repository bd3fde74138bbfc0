"""What a step's row holds (the trajectory) and the references a linear model is measured against."""
