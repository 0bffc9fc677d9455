"""Class imbalance, for every strategy: what a fit does when some classes are rare.

    balance.py      --balance: class-weighted loss/head or a class-balanced sampler (auto: from the ratio)
    synthesize.py   --synthesize: SMOTE in embedding space (imbalanced-learn); mixup/cutmix for images

Both depend only on the bottom layer (config, errors, log), so every strategy and the
active-learning code can use them.
"""
