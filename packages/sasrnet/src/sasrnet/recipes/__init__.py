"""Runs that own an output directory (config, checkpoints, metrics, plots): training, grounding
pre-training, evaluation. The building blocks they use (model, data, losses, metrics) live one level up."""
