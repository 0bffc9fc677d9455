"""Keep learning: self-supervised pre-training on your own unlabelled data (pretrain.py and
the methods beside it), adaptation to an unlabelled target domain (domain.py: CORAL on
cached features, DANN with a gradient-reversal domain classifier), and continual learning
(continual.py: new classes or more data on top of a finished run, without forgetting the old).

Each sits beside the pipeline and composes its stages (load, build, embed, train, finish): a
pre-training run is registered in the local zoo, and an adapted or continued fit writes a run
directory of the same contract as `fit`.
"""
