"""CLIPErase's recipes: runs that own an output directory (config.json, checkpoints, metrics, reports,
plots), built on the package's building blocks. ``mm unlearn run|eval|compare`` and ``mm demo`` are
:mod:`cliperase.recipes.runner` (its report: :mod:`cliperase.recipes.report`), ``mm diffusion pretrain``
:mod:`cliperase.recipes.diffusion_pretrain`, ``mm diffusion eval`` :mod:`cliperase.recipes.diffusion_eval`."""
