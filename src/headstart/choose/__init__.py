"""choose/: which pre-trained model (and layer), which strategy, which hyper-parameters.

scores.py  transferability scores on embeddings (LogME, H-score, NCE, LEEP, k-NN, linear probe,
           SFDA, NCTI, model size) and their registry; the algebra in logme.py, fisher.py,
           score_inputs.py (the checks every score's input passes)
rank.py    `headstart rank`: every candidate embeds a labelled sample once, every score runs
image_size.py  `--image-size auto`: the probe's input size measured on a sample of the training split
auto.py    `--backbone auto` and `--strategy auto`: the choice and its reason, inside the budget
race.py    `--strategy auto`'s race: rounds of slices, the drop rule, the winner continuing to the end;
           its arms in race_arms.py (each keeps what its slices built), its curves in learning_curves.py
auto_fit.py  a fit that chooses: the pipeline's begin_fit, the choice, complete_fit (above the
           pipeline, which never calls back into this package)
tune.py    `headstart tune`: an Optuna study whose trials are ordinary runs
"""
