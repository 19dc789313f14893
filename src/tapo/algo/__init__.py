"""Pure tensor functions of the DAPO update: group advantages, the constant-group filter, the loss."""
