"""Search methods over the shared embedding module and trainer: OptFS (feature-value gates); OptInter, DNIS next."""
