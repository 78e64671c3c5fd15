"""`python -m models.kernels` (make bytecode, under make run and make test): build the CPU kernels ahead, say what happened, never fail."""

import logging

from models.kernels import field_attention

logging.basicConfig(level=logging.INFO, format="%(message)s")
print("CPU attention kernel:", "built" if field_attention() is not None else "not available here (AutoInt uses its torch path)")
