"""Fewer labels, better labels: everything that decides which examples a model learns from.

    al_classifier.py the classifiers the queries read, over standardised embeddings
    queries.py      @register_query: active-learning queries over embeddings (scikit-activeml)
    select.py       `headstart select RUN POOL`: the k items to label next, as a CSV
    simulate.py     `headstart simulate-al DATA`: the loop on hidden labels, every query beside random

Everything here works on cached features from `embed` and never trains a backbone; the
commands get their feature model from the caller (api.py), so this package sits below the
pipeline.
"""
