"""Search methods, one module each; this registry is the one place that lists them (in the order a run applies them)."""

from methods.base import Method
from methods.capped import FrequencyCap
from methods.dnis import DNIS
from methods.encodings import Encodings
from methods.hashing import HashingTrick
from methods.leaves import GBDTLeaves
from methods.optfs import OptFS
from methods.optinter import OptInterMethod
from methods.unified import Unified

METHODS: dict[str, Method] = {
    "encodings": Encodings(),  # first: the others search on the data with its derived fields
    "leaves": GBDTLeaves(),  # after encodings: its trees grow on the encoded statistics too
    "optfs": OptFS(),
    "dnis": DNIS(),  # after OptFS: in one run DNIS searches on OptFS's gated, retrained model
    "optinter": OptInterMethod(),
    "unified": Unified(),
    "hashing": HashingTrick(),  # the baselines Unified Embedding is measured against (issue 19)
    "capped": FrequencyCap(),
}
