"""Quality evidence: inter-rater agreement, reviewer and process statistics (the dataset card that
prints them lives with the export stage, in `clinreason.stages.export.card`)."""
