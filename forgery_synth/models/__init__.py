"""The pretrained networks synthesis can use (diffusion inpaint pipelines, SAM), loaded lazily."""
