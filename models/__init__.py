"""Models, embeddings, search methods and the trainer (torch only; never polars or mlflow).

Empty until the models issue: the package exists so the layout, imports and
packaging are settled from the start.
"""
