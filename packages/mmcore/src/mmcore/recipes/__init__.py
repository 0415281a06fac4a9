"""mmcore's recipes: runs that own an output directory (checkpoints, config.json, metrics.json), built on
the library modules. ``mm clip pretrain`` is :mod:`mmcore.recipes.clip_pretrain`, ``mm clip eval``
:mod:`mmcore.recipes.clip_eval`."""
