"""The three training stages: config, data pipeline, stages, adversarial and augmentation, the loop, export."""
