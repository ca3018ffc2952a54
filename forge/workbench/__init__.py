"""The analysis workbench: what a distilled student learned from its teacher, measured on features and
predictions rather than on the task metric alone.

Pure numeric core, one job a module, numpy / torch / scikit-learn only (no models, no files):
`cka` (linear CKA and minibatch debiased CKA between teacher and student layers, pooling of hidden
states at real tokens), `probes` (L2 logistic-regression probes per layer with control-task
selectivity), `disagreement` (where student and teacher disagree: by gold label, teacher confidence,
input length, teacher correctness; per-sentence chrF for translation).
"""
