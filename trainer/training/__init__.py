"""The three training stages: config, data pipeline, losses, stages, adversarial and augmentation,
the loop, validation, export.
"""
