"""ckptlab."""
