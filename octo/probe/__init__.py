"""GRPO probes: short RL runs from a checkpoint whose dynamics score its RL readiness."""
