"""Audio-language-model faithfulness toolkit: prepare, perturb, infer, repair,
condition, score, finetune, merge and launch stages that talk through files."""

__version__ = "0.1.0"
