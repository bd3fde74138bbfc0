"""trainlab's Hydra launcher (`hydra/launcher=parallel`). Hydra accepts launchers only from the
`hydra_plugins` namespace package, so it lives here, beside the trainlab package, in its wheel."""
