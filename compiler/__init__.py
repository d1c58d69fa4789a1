"""runix compiler: load → expand → validate → hash → lock → plan → lower.

Every stage here is pure Python and never imports jax, so that `runix validate`,
`runix hash` and `runix compile --dry-run` start in a fraction of a second.
"""
