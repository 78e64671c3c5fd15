"""Models, embeddings, search methods and the trainer (torch only; never polars or mlflow).

Started: `batching` (encoded arrays -> EncodedBatch in KeyedJaggedTensor
layout) and `embedding` (the one FeatureEmbedding module, torchrec and
plain-torch backends). The models, the trainer and the train stage follow.
"""
