"""Encoders: the open_clip factory (:mod:`mmcore.encoders.clip`) and the transformers text-tower
export (:mod:`mmcore.encoders.hf_export`). Import the submodules directly; this package imports
nothing heavy."""
