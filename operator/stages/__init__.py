"""PURE: the stages of a cluster's round, in the order `planner.STAGES` runs them, each a function of one frozen
`context.Round` that returns its actions."""
