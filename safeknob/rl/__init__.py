"""Reinforcement learning: PPO and PPO-Lagrangian training, AIRL learned rewards,
behavioural-cloning warm starts and policy snapshots. Knows nothing of stages or methods."""
