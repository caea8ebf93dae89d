"""vaelab: a config-driven experiment runner for what latent dimensions VAEs learn."""

__version__ = "0.1.0"
