"""Multi-agent PPO systems (IPPO, MAPPO) in the style of Mava's Anakin systems.

``ppo`` holds the pure pieces (state tuples, GAE, losses), ``networks`` the shared actor and the
critics, ``wrappers`` auto-reset and episode metrics, ``anakin`` the jitted learner that both
systems share, and ``ippo`` / ``mappo`` the two systems themselves.
"""
