"""How one training step is executed. `dynamic.py` runs it eagerly; a static engine
(`paddle.jit.to_static` over the same forward + loss) reuses the same modules."""
