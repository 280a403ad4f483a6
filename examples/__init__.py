"""Recipes for what users put on top of the vision stage: each imports the library alone, as a
user's own project would. `ppo_on_codes.py`: stable-baselines3's PPO on the codes."""
