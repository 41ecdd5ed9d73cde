"""Quality evidence: inter-rater agreement, reviewer and process statistics, the dataset card."""
