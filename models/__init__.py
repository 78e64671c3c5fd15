"""Models, embeddings and the trainer (torch only; never polars or mlflow).

`batching` (encoded arrays -> EncodedBatch in KeyedJaggedTensor layout),
`embedding` (the one FeatureEmbedding module: torchrec and plain-torch
backends, Unified Embedding's shared hashed tables), the models (LR, FM,
DNN, DeepFM, AutoInt(+), FGCNN; `registry` builds any of them by name), `trainer`
(the one training loop) and `distributed` (torchrec DistributedModelParallel).
"""

import logging

# torchrec calls torch.fx's is_fx_tracing(), whose one-time deprecation notice (meant for torchrec's authors)
# would otherwise land on every user's stderr.
logging.getLogger("torch.fx._symbolic_trace").setLevel(logging.ERROR)
